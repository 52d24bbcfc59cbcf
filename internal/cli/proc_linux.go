package cli

import (
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/vessel-containers/vessel/internal/procid"
)

// procStart returns a process's start time (procid): together with the pid it names one
// process, never a later one that reuses the pid.
func procStart(pid int) (uint64, error) {
	id, err := procid.Of(pid)
	if err != nil {
		return 0, err
	}
	return id.StartTime, nil
}

// alive reports whether the process pid, started at start, still runs (a zombie does not).
func alive(pid int, start uint64) bool {
	return pid > 0 && procid.ID{Pid: pid, StartTime: start}.Alive()
}

// waitGone waits up to timeout for the process to exit. It reports whether it did.
func waitGone(pid int, start uint64, timeout time.Duration) bool {
	if !alive(pid, start) {
		return true
	}
	return procid.ID{Pid: pid, StartTime: start}.Wait(timeout)
}

// killAndWait sends SIGKILL to the process if it is still the one recorded and waits for
// it to exit.
func killAndWait(pid int, start uint64, timeout time.Duration) bool {
	if !alive(pid, start) {
		return true
	}
	p := procid.ID{Pid: pid, StartTime: start}
	if err := p.Signal(syscall.SIGKILL); err != nil && !errdefs.IsNotFound(err) {
		return false
	}
	return p.Wait(timeout)
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
