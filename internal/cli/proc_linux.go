package cli

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// procStart returns a process's start time (field 22 of /proc/<pid>/stat, in clock ticks
// since boot): together with the pid it names one process, never a later one that reuses
// the pid.
func procStart(pid int) (uint64, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("process %d: %w", pid, err)
	}
	// The command name (field 2) is in parentheses and may hold spaces: start after it.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("process %d: malformed stat %q", pid, s)
	}
	fields := strings.Fields(s[i+1:])
	// fields[0] is field 3 (state), so field 22 is fields[19].
	if len(fields) < 20 {
		return 0, fmt.Errorf("process %d: short stat %q", pid, s)
	}
	return strconv.ParseUint(fields[19], 10, 64)
}

// alive reports whether the process pid, started at start, still runs (a zombie does not).
func alive(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	got, err := procStart(pid)
	if err != nil || got != start {
		return false
	}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// waitGone waits up to timeout for the process to exit. It reports whether it did.
func waitGone(pid int, start uint64, timeout time.Duration) bool {
	if !alive(pid, start) {
		return true
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return errors.Is(err, unix.ESRCH)
	}
	defer unix.Close(fd)
	// The pidfd may name a newer process if ours exited between alive and PidfdOpen.
	if !alive(pid, start) {
		return true
	}
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

// killAndWait sends SIGKILL to the process if it is still the one recorded and waits for
// it to exit.
func killAndWait(pid int, start uint64, timeout time.Duration) bool {
	if !alive(pid, start) {
		return true
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return false
	}
	return waitGone(pid, start, timeout)
}

// monitorPtySize reads the terminal size of the pty slave a container's monitor holds as
// descriptor 5.
func monitorPtySize(pid int) (rows, cols uint16, err error) {
	if pid <= 0 {
		return 0, 0, fmt.Errorf("no monitor pid")
	}
	f, err := os.OpenFile(fmt.Sprintf("/proc/%d/fd/5", pid), os.O_RDONLY|unix.O_NOCTTY, 0)
	if err != nil {
		return 0, 0, fmt.Errorf("open monitor pty: %w", err)
	}
	defer f.Close()
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	if err != nil {
		return 0, 0, fmt.Errorf("monitor pty size: %w", err)
	}
	return ws.Row, ws.Col, nil
}
