package procio

import (
	"errors"
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// NewPty creates a pseudo-terminal for a container process. The container's own terminal
// lives in the guest, where the line discipline (echo, line editing, signals from ^C) and
// the size take effect; the host terminal only carries bytes, so its slave end is set raw.
// The caller sends the master to a console socket and relays the slave to the process's
// FIFOs; when the master's owner resizes it, the slave's controlling process gets SIGWINCH.
// Both files are pollable: closing one interrupts a read on it.
func NewPty() (master, slave *os.File, retErr error) {
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open /dev/ptmx: %w", err)
	}
	defer func() {
		if retErr != nil {
			master.Close()
		}
	}()
	var n uint32
	err = control(master, func(fd int) error {
		if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
			return fmt.Errorf("unlock pty: %w", err)
		}
		var err error
		if n, err = unix.IoctlGetUint32(fd, unix.TIOCGPTN); err != nil {
			return fmt.Errorf("pty number: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	slavePath := fmt.Sprintf("/dev/pts/%d", n)
	slave, err = os.OpenFile(slavePath, os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open pty slave %s: %w", slavePath, err)
	}
	err = control(slave, func(fd int) error {
		t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
		if err != nil {
			return err
		}
		cfmakeraw(t)
		return unix.IoctlSetTermios(fd, unix.TCSETS, t)
	})
	if err != nil {
		slave.Close()
		return nil, nil, fmt.Errorf("set pty raw: %w", err)
	}
	return master, slave, nil
}

// control runs fn on f's descriptor without taking it out of non-blocking mode (as Fd
// would).
func control(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("%s: %w", f.Name(), err)
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return fmt.Errorf("%s: %w", f.Name(), err)
	}
	return ferr
}

// cfmakeraw is cfmakeraw(3).
func cfmakeraw(t *unix.Termios) {
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB
	t.Cflag |= unix.CS8
	t.Cc[unix.VMIN] = 1
	t.Cc[unix.VTIME] = 0
}

// SendConsole connects to the unix socket at path and sends the pty master over it with
// SCM_RIGHTS, as runc does for --console-socket; the message carries the master's name.
func SendConsole(path string, master *os.File) error {
	conn, err := net.Dial("unix", path)
	if err != nil {
		return fmt.Errorf("connect to console socket: %w", err)
	}
	defer conn.Close()
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return errors.New("console socket is not a unix socket")
	}
	return control(master, func(fd int) error {
		if _, _, err := uc.WriteMsgUnix([]byte(master.Name()), unix.UnixRights(fd), nil); err != nil {
			return fmt.Errorf("send pty master to console socket: %w", err)
		}
		return nil
	})
}

// Size is a terminal's size.
type Size struct {
	Rows, Cols uint16
}

// SizeOf reads the size of the terminal f.
func SizeOf(f *os.File) (Size, error) {
	var s Size
	err := control(f, func(fd int) error {
		ws, err := unix.IoctlGetWinsize(fd, unix.TIOCGWINSZ)
		if err != nil {
			return fmt.Errorf("terminal size: %w", err)
		}
		s = Size{Rows: ws.Row, Cols: ws.Col}
		return nil
	})
	return s, err
}

// Resize sets the size of the terminal f.
func Resize(f *os.File, s Size) error {
	return control(f, func(fd int) error {
		return unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &unix.Winsize{Row: s.Rows, Col: s.Cols})
	})
}
