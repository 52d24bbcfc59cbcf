//go:build linux

package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
	"github.com/vessel-containers/vessel/internal/agent/guard"
	"github.com/vessel-containers/vessel/internal/agent/libct"
)

// consoleTimeout bounds the wait for the terminal master after the process started.
const consoleTimeout = 10 * time.Second

// processIO is the agent's side of a process's standard streams: pipes, or a terminal whose
// master libcontainer sends over a socket.
type processIO struct {
	stdout, stderr *stream

	// stdinMu serializes stdin writes and guards stdin and stdinClosed.
	stdinMu sync.Mutex
	// stdin is the pipe's write end or the terminal master; nil when stdin is /dev/null.
	stdin       *os.File
	stdinClosed bool

	// tty is the terminal master, nil for pipes.
	tty *os.File

	// Set up before start, released by afterStart or abort.
	child       []*os.File // the process's ends, closed once it started
	outR, errR  *os.File   // read ends of the output pipes
	consoleSock *os.File   // our end of the console socket

	// copiers are the goroutines moving output into the streams; they end at EOF of their
	// pipe, or when shutdown closes it.
	copiers sync.WaitGroup
}

// newProcessIO prepares stdio for a process according to cfg.
func newProcessIO(cfg *agentv1.StdioConfig, terminal bool) (_ *processIO, _ libct.Stdio, retErr error) {
	pio := &processIO{stdout: newStream(), stderr: newStream()}
	defer func() {
		if retErr != nil {
			pio.abort()
		}
	}()
	if terminal || cfg.GetTerminal() {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return nil, libct.Stdio{}, fmt.Errorf("console socket: %w", err)
		}
		pio.consoleSock = os.NewFile(uintptr(fds[0]), "console-socket")
		child := os.NewFile(uintptr(fds[1]), "console-socket-child")
		pio.child = append(pio.child, child)
		pio.stderr.finish() // a terminal has no separate stderr
		return pio, libct.Stdio{
			ConsoleSocket: child,
			ConsoleWidth:  uint16(cfg.GetConsoleWidth()),
			ConsoleHeight: uint16(cfg.GetConsoleHeight()),
		}, nil
	}
	var st libct.Stdio
	if cfg.GetStdin() {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, libct.Stdio{}, fmt.Errorf("stdin pipe: %w", err)
		}
		pio.stdin = w
		pio.child = append(pio.child, r)
		st.Stdin = r
	} else {
		pio.stdinClosed = true
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, libct.Stdio{}, fmt.Errorf("stdout pipe: %w", err)
	}
	pio.outR = outR
	pio.child = append(pio.child, outW)
	st.Stdout = outW
	errR, errW, err := os.Pipe()
	if err != nil {
		return nil, libct.Stdio{}, fmt.Errorf("stderr pipe: %w", err)
	}
	pio.errR = errR
	pio.child = append(pio.child, errW)
	st.Stderr = errW
	return pio, st, nil
}

// afterStart closes the process's ends and starts the copiers. For a terminal it first
// receives the master from the console socket.
func (p *processIO) afterStart(ctx context.Context) error {
	for _, f := range p.child {
		f.Close()
	}
	p.child = nil
	if p.consoleSock != nil {
		master, err := recvFile(p.consoleSock, consoleTimeout)
		p.consoleSock.Close()
		p.consoleSock = nil
		if err != nil {
			return fmt.Errorf("receive terminal: %w", err)
		}
		p.tty = master
		p.stdinMu.Lock()
		p.stdin = master
		p.stdinMu.Unlock()
	}
	if p.tty != nil {
		p.startCopier(ctx, "terminal copier", p.stdout, p.tty)
		return nil
	}
	p.startCopier(ctx, "stdout copier", p.stdout, p.outR)
	p.startCopier(ctx, "stderr copier", p.stderr, p.errR)
	return nil
}

func (p *processIO) startCopier(ctx context.Context, name string, s *stream, f *os.File) {
	p.copiers.Add(1)
	guard.Go(ctx, name, func() {
		defer p.copiers.Done()
		s.copyFrom(f)
	}, func(*guard.PanicError) {
		// copyFrom's deferred finish already ended the stream: the host reads to EOF and
		// the process blocks on its full pipe, as if nobody read it. Close the pipe so it
		// gets EPIPE instead.
		f.Close()
	})
}

// abort releases everything when the process could not start.
func (p *processIO) abort() {
	for _, f := range append(p.child, p.outR, p.errR, p.consoleSock, p.stdin, p.tty) {
		if f != nil {
			f.Close()
		}
	}
	p.child = nil
	p.stdout.close()
	p.stderr.close()
}

// write writes data to stdin; ctx ends a write blocked on a full pipe.
func (p *processIO) write(ctx context.Context, data []byte) (int, error) {
	p.stdinMu.Lock()
	defer p.stdinMu.Unlock()
	if p.stdin == nil || p.stdinClosed {
		return 0, fmt.Errorf("%w: stdin is closed or was not requested (StdioConfig.stdin)", errdefs.ErrFailedPrecondition)
	}
	stop := context.AfterFunc(ctx, func() { _ = p.stdin.SetWriteDeadline(time.Now()) })
	defer func() {
		stop()
		_ = p.stdin.SetWriteDeadline(time.Time{})
	}()
	n, err := p.stdin.Write(data)
	if err != nil {
		if ctx.Err() != nil {
			return n, fmt.Errorf("write stdin: %w", ctx.Err())
		}
		if errors.Is(err, unix.EPIPE) {
			return n, fmt.Errorf("write stdin: %w: the process closed its stdin", errdefs.ErrFailedPrecondition)
		}
		return n, fmt.Errorf("write stdin: %w", err)
	}
	return n, nil
}

// closeStdin closes the stdin pipe: the process reads EOF. For a terminal the master stays
// open (it carries the output too); further writes are refused.
func (p *processIO) closeStdin() error {
	p.stdinMu.Lock()
	defer p.stdinMu.Unlock()
	if p.stdinClosed {
		return nil
	}
	p.stdinClosed = true
	if p.stdin != nil && p.tty == nil {
		if err := p.stdin.Close(); err != nil {
			return fmt.Errorf("close stdin: %w", err)
		}
	}
	return nil
}

// resize sets the terminal size.
func (p *processIO) resize(rows, cols uint32) error {
	if p.tty == nil {
		return fmt.Errorf("%w: the process has no terminal", errdefs.ErrFailedPrecondition)
	}
	rc, err := p.tty.SyscallConn()
	if err != nil {
		return fmt.Errorf("resize terminal: %w", err)
	}
	var ioctlErr error
	err = rc.Control(func(fd uintptr) {
		ioctlErr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: uint16(rows), Col: uint16(cols)})
	})
	if err == nil {
		err = ioctlErr
	}
	if err != nil {
		return fmt.Errorf("resize terminal: %w", err)
	}
	return nil
}

// shutdown closes every stream and waits for the copiers. Buffered output can still be read
// until the process entry is forgotten.
func (p *processIO) shutdown() {
	p.stdinMu.Lock()
	p.stdinClosed = true
	if p.stdin != nil && p.stdin != p.tty {
		p.stdin.Close()
	}
	p.stdinMu.Unlock()
	for _, f := range []*os.File{p.outR, p.errR, p.tty} {
		if f != nil {
			f.Close()
		}
	}
	p.stdout.close()
	p.stderr.close()
	p.copiers.Wait()
}

// recvFile receives one file descriptor sent with SCM_RIGHTS (libcontainer sends the
// terminal master this way), waiting at most timeout.
func recvFile(sock *os.File, timeout time.Duration) (*os.File, error) {
	rc, err := sock.SyscallConn()
	if err != nil {
		return nil, err
	}
	var (
		f       *os.File
		recvErr error
	)
	err = rc.Control(func(fd uintptr) {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		deadline := time.Now().Add(timeout)
		for {
			n, err := unix.Poll(pfd, int(time.Until(deadline).Milliseconds()))
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				recvErr = fmt.Errorf("poll: %w", err)
				return
			}
			if n == 0 {
				recvErr = fmt.Errorf("no terminal received in %s", timeout)
				return
			}
			break
		}
		name := make([]byte, 4096)
		oob := make([]byte, unix.CmsgSpace(4))
		n, oobn, _, _, err := unix.Recvmsg(int(fd), name, oob, unix.MSG_CMSG_CLOEXEC)
		if err != nil {
			recvErr = fmt.Errorf("recvmsg: %w", err)
			return
		}
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			recvErr = fmt.Errorf("terminal message: %w", err)
			return
		}
		if len(msgs) != 1 {
			recvErr = fmt.Errorf("terminal message carries %d control messages, expected 1", len(msgs))
			return
		}
		fds, err := unix.ParseUnixRights(&msgs[0])
		if err != nil {
			recvErr = fmt.Errorf("terminal message: %w", err)
			return
		}
		if len(fds) != 1 {
			for _, x := range fds {
				unix.Close(x)
			}
			recvErr = fmt.Errorf("terminal message carries %d files, expected 1", len(fds))
			return
		}
		// Non-blocking so the runtime poller serves it and Close interrupts reads.
		if err := unix.SetNonblock(fds[0], true); err != nil {
			unix.Close(fds[0])
			recvErr = fmt.Errorf("terminal nonblock: %w", err)
			return
		}
		f = os.NewFile(uintptr(fds[0]), string(name[:n]))
	})
	if err != nil {
		return nil, err
	}
	return f, recvErr
}
