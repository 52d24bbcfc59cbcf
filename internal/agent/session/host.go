package session

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// hostState is what a port can tell besides its bytes: whether a host is attached now, as
// far as the guest knows. The virtio-serial device tells (devicePort); a plain stream does
// not, and the mux then relies on EOF and stream ids alone.
type hostState interface {
	hostAttached() (bool, error)
}

// hostStateOf returns port's host state, or nil when the port cannot tell. Test ports
// implement hostState themselves.
func hostStateOf(port io.ReadWriter) hostState {
	switch p := port.(type) {
	case hostState:
		return p
	case *os.File:
		return devicePort{p}
	}
	return nil
}

// devicePort reads a virtio-serial port's host state from poll(2): the guest driver
// (virtio_console) reports POLLHUP exactly while it believes no host is attached, that is
// until it has handled the host's attach notice (VIRTIO_CONSOLE_PORT_OPEN). A file that
// is not such a port never reports POLLHUP before its end, so it counts as attached.
type devicePort struct{ f *os.File }

func (d devicePort) hostAttached() (bool, error) {
	rc, err := d.f.SyscallConn()
	if err != nil {
		return false, fmt.Errorf("poll port: %w", err)
	}
	var hup bool
	var pollErr error
	if err := rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			_, pollErr = unix.Poll(fds, 0)
			if !errors.Is(pollErr, unix.EINTR) {
				break
			}
		}
		hup = fds[0].Revents&unix.POLLHUP != 0
	}); err != nil {
		return false, fmt.Errorf("poll port: %w", err)
	}
	if pollErr != nil {
		return false, fmt.Errorf("poll port: %w", pollErr)
	}
	return !hup, nil
}
