package procid

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// ReadStat reads and parses /proc/<pid>/stat. A process that does not exist is
// errdefs.ErrNotFound.
func ReadStat(pid int) (Stat, error) {
	if pid <= 0 {
		return Stat{}, fmt.Errorf("process %d: not a pid: %w", pid, errdefs.ErrInvalidArgument)
	}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
		return Stat{}, fmt.Errorf("process %d: %w", pid, errdefs.ErrNotFound)
	}
	if err != nil {
		return Stat{}, fmt.Errorf("process %d: %w", pid, err)
	}
	return ParseStat(data)
}

// Of is the ID of the running process pid.
func Of(pid int) (ID, error) {
	st, err := ReadStat(pid)
	if err != nil {
		return ID{}, err
	}
	return ID{Pid: pid, StartTime: st.StartTime}, nil
}

// Self is the ID of this process.
func Self() (ID, error) { return Of(os.Getpid()) }

// Exists reports whether the process still exists, a zombie included: its pid names a
// process with its start time.
func (id ID) Exists() bool {
	st, err := ReadStat(id.Pid)
	return err == nil && st.StartTime == id.StartTime
}

// Alive reports whether the process still runs: it exists and is not a zombie.
func (id ID) Alive() bool {
	st, err := ReadStat(id.Pid)
	return err == nil && st.StartTime == id.StartTime && st.State != 'Z'
}

// open returns a pidfd for the process, or an error wrapping errdefs.ErrNotFound when it
// is gone or its pid names another process now. The pidfd pins the process it was opened
// for: a signal sent through it cannot reach a later process that reuses the pid.
func (id ID) open() (int, error) {
	if id.Pid <= 0 {
		return -1, fmt.Errorf("%s: not a pid: %w", id, errdefs.ErrInvalidArgument)
	}
	fd, err := unix.PidfdOpen(id.Pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return -1, fmt.Errorf("%s: %w", id, errdefs.ErrNotFound)
	}
	if err != nil {
		return -1, fmt.Errorf("%s: pidfd_open: %w", id, err)
	}
	// Checked after opening: the pidfd now holds whatever process has the pid.
	if !id.Exists() {
		_ = unix.Close(fd)
		return -1, fmt.Errorf("%s: exited, or its pid names another process now: %w", id, errdefs.ErrNotFound)
	}
	return fd, nil
}

// Signal sends sig to the process if it still is the one id names. A process that is
// gone, or whose pid was reused, is errdefs.ErrNotFound.
func (id ID) Signal(sig syscall.Signal) error {
	fd, err := id.open()
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.PidfdSendSignal(fd, sig, nil, 0); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("%s: %w", id, errdefs.ErrNotFound)
		}
		return fmt.Errorf("signal %s to %s: %w", sig, id, err)
	}
	return nil
}

// Wait waits up to timeout for the process to exit (become a zombie or be reaped). It
// reports whether it did; a process that is already gone has.
func (id ID) Wait(timeout time.Duration) bool {
	fd, err := id.open()
	if err != nil {
		return errdefs.IsNotFound(err)
	}
	defer unix.Close(fd)
	deadline := time.Now().Add(timeout)
	for {
		ms := int(time.Until(deadline) / time.Millisecond)
		if ms <= 0 {
			return false
		}
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, ms)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return err == nil && n > 0
	}
}
