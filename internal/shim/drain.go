package shim

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/containerd/fifo"
	"golang.org/x/sys/unix"
)

// outputTakeTimeout bounds how long the end of a process's output waits for the reader of
// its FIFOs to take what the shim wrote into them (see awaitTaken).
const outputTakeTimeout = 10 * time.Second

// The reader of a FIFO is looked at again after takePollMin, then after twice as long each
// time, up to takePollMax: a pipe tells its writer nothing when it empties.
const (
	takePollMin = 500 * time.Microsecond
	takePollMax = 20 * time.Millisecond
)

// errReaderGone: the FIFO has no reader any more; what is left in it is lost to nobody.
var errReaderGone = errors.New("the fifo has no reader")

// awaitTaken returns once the reader of the pipe w (the shim's write end of an output FIFO)
// has taken every byte in it, or once the pipe has no reader (errReaderGone), or when ctx
// ends. A FIFO the shim closed meanwhile (the process's stdio was stopped) ends it too.
// pause waits between looks; it returns ctx's error when ctx ends first.
//
// The exit of a process is reported only after this: a client may close its end of the
// FIFOs as soon as it learns of the exit, and bytes it had not read by then would be lost.
// containerd 1.6's client does that in Task.Delete (it closes the FIFOs before it waits for
// its copy to end), which `ctr run --rm` calls right after the exit.
func awaitTaken(ctx context.Context, w syscall.Conn, pause func(context.Context, time.Duration) error) error {
	rc, err := w.SyscallConn()
	if isClosed(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("output fifo: %w", err)
	}
	d := takePollMin
	for {
		var unread int
		var gone bool
		var lookErr error
		err := rc.Control(func(fd uintptr) { unread, gone, lookErr = lookAtPipe(int(fd)) })
		if isClosed(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("output fifo: %w", err)
		}
		switch {
		case lookErr != nil:
			return fmt.Errorf("output fifo: %w", lookErr)
		case unread == 0:
			return nil
		case gone:
			return fmt.Errorf("%d bytes left unread: %w", unread, errReaderGone)
		}
		if err := pause(ctx, d); err != nil {
			return fmt.Errorf("reader of the output fifo left %d bytes unread: %w", unread, err)
		}
		d = min(2*d, takePollMax)
	}
}

// isClosed reports whether err says that the file was closed.
func isClosed(err error) bool {
	return errors.Is(err, os.ErrClosed) || errors.Is(err, fifo.ErrClosed)
}

// lookAtPipe returns the bytes buffered in the pipe fd and whether its last reader is
// gone (poll reports POLLERR on a write end then).
func lookAtPipe(fd int) (unread int, gone bool, err error) {
	// TIOCINQ is FIONREAD: the bytes waiting in a pipe, asked on either end.
	unread, err = unix.IoctlGetInt(fd, unix.TIOCINQ)
	if err != nil {
		return 0, false, fmt.Errorf("bytes in the pipe: %w", err)
	}
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	for {
		_, err := unix.Poll(pfd, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 0, false, fmt.Errorf("poll the pipe: %w", err)
		}
		break
	}
	return unread, pfd[0].Revents&unix.POLLERR != 0, nil
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
