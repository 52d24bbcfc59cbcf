package shim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/fifo"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/vessel-containers/vessel/internal/sandbox"
)

// Grace periods of a logging binary at the end of its process's output: after its pipes
// reach EOF it may take loggerExitGrace to flush and exit, then it gets SIGTERM and
// loggerTermGrace more before SIGKILL.
const (
	loggerExitGrace = 10 * time.Second
	loggerTermGrace = 2 * time.Second
)

// hostIO is the host side of one process's stdio, opened from the names containerd gave.
type hostIO struct {
	pio sandbox.IO
	// stdin is the stdin FIFO, nil when the process has none.
	stdin *stdinFIFO
	// closers are closed in order when the process's output has drained, or at once when
	// the process goes away: FIFOs, the log file, the logging binary (which is reaped).
	closers []io.Closer
	// fifos are the output FIFOs among closers: before they are closed at the end of the
	// output, their reader is given the time to take what is in them (awaitTaken).
	fifos []syscall.Conn
}

func (h *hostIO) close() error {
	var errs []error
	for _, c := range h.closers {
		if err := c.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// openStdio opens a process's stdio as containerd's runc shim does. The scheme of the
// stdout URI decides where output goes:
//   - no scheme, or fifo: stdout and stderr are FIFO paths (stderr unused with a terminal);
//   - file: stdout and stderr are appended to the one file (its directory is created);
//   - binary: the binary at the URI's path is started with the output on pipes at fds 3
//     (stdout) and 4 (stderr), a pipe at fd 5 it closes (or writes to) once it is ready,
//     CONTAINER_ID and CONTAINER_NAMESPACE as its environment and the URI's query as its
//     arguments (each key, then its first value); openStdio returns once it is ready.
//
// Stdin is always a FIFO path. Any other scheme is refused naming it. id is the process's
// id (the container id for the init process, the exec id otherwise). The opens of output
// FIFOs and the wait for the logging binary are bounded by openCtx; the stdin FIFO is
// opened in the background, bound to nothing (the client may open its end later; closing
// it ends a pending open).
func openStdio(ctx, openCtx context.Context, id string, s stdio) (_ *hostIO, retErr error) {
	h := &hostIO{}
	defer func() {
		if retErr != nil {
			h.close()
		}
	}()
	if s.stdin != "" {
		f, err := fifo.OpenFifo(context.WithoutCancel(ctx), s.stdin, syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			return nil, fmt.Errorf("open stdin fifo %s: %w", s.stdin, err)
		}
		h.stdin = newStdinFIFO(f)
		h.closers = append(h.closers, h.stdin)
		h.pio.Stdin = h.stdin
	}
	if s.stdout == "" && s.stderr == "" {
		return h, nil
	}
	u, err := url.Parse(s.stdout)
	if err != nil {
		return nil, fmt.Errorf("parse stdout uri %q: %w", s.stdout, err)
	}
	switch u.Scheme {
	case "", "fifo":
		stdout, stderr := s.stdout, s.stderr
		if u.Scheme == "fifo" {
			stdout = u.Path
			if stderr != "" {
				eu, err := url.Parse(stderr)
				if err != nil {
					return nil, fmt.Errorf("parse stderr uri %q: %w", stderr, err)
				}
				stderr = eu.Path
			}
		}
		if stdout != "" {
			f, err := fifo.OpenFifo(openCtx, stdout, syscall.O_WRONLY, 0)
			if err != nil {
				return nil, fmt.Errorf("open stdout fifo %s: %w", stdout, err)
			}
			h.closers = append(h.closers, f)
			if err := h.addFIFO(f, stdout); err != nil {
				return nil, err
			}
			h.pio.Stdout = f
		}
		if stderr != "" && !s.terminal {
			f, err := fifo.OpenFifo(openCtx, stderr, syscall.O_WRONLY, 0)
			if err != nil {
				return nil, fmt.Errorf("open stderr fifo %s: %w", stderr, err)
			}
			h.closers = append(h.closers, f)
			if err := h.addFIFO(f, stderr); err != nil {
				return nil, err
			}
			h.pio.Stderr = f
		}
	case "file":
		if !filepath.IsAbs(u.Path) {
			return nil, fmt.Errorf("stdout uri %q: the file path must be absolute", s.stdout)
		}
		if err := os.MkdirAll(filepath.Dir(u.Path), 0o755); err != nil {
			return nil, fmt.Errorf("stdout uri %q: %w", s.stdout, err)
		}
		f, err := os.OpenFile(u.Path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return nil, fmt.Errorf("stdout uri %q: %w", s.stdout, err)
		}
		h.closers = append(h.closers, f)
		h.pio.Stdout = f
		if !s.terminal {
			h.pio.Stderr = f
		}
	case "binary":
		ns, ok := namespaces.Namespace(ctx)
		if !ok {
			return nil, fmt.Errorf("stdout uri %q: no containerd namespace for the logging binary", s.stdout)
		}
		l, err := startLogger(openCtx, u, id, ns)
		if err != nil {
			return nil, fmt.Errorf("stdout uri %q: %w", s.stdout, err)
		}
		h.closers = append(h.closers, l)
		h.pio.Stdout = l.stdout
		if !s.terminal {
			h.pio.Stderr = l.stderr
		}
	default:
		return nil, fmt.Errorf("stdout uri %q: scheme %q is not supported (fifo, file, binary are): %w", s.stdout, u.Scheme, errUnsupportedScheme)
	}
	return h, nil
}

var errUnsupportedScheme = errors.New("unsupported stdio scheme")

// addFIFO notes f, the output FIFO at path, for awaitTaken.
func (h *hostIO) addFIFO(f io.Writer, path string) error {
	c, ok := f.(syscall.Conn)
	if !ok {
		return fmt.Errorf("output fifo %s: %T has no file descriptor", path, f)
	}
	h.fifos = append(h.fifos, c)
	return nil
}

// logger is a running logging binary: the shim writes the process's output to its pipes.
// It is reaped by the goroutine started with it, which ends when the binary exits; Close
// makes sure it does.
type logger struct {
	path           string
	cmd            *exec.Cmd
	stdout, stderr *os.File
	// exited is closed once cmd.Wait returned; waitErr is its result.
	exited  chan struct{}
	waitErr error
}

// startLogger starts the logging binary named by u and waits, bounded by ctx, until it is
// ready.
func startLogger(ctx context.Context, u *url.URL, id, ns string) (_ *logger, retErr error) {
	if !filepath.IsAbs(u.Path) {
		return nil, fmt.Errorf("the logging binary path %q must be absolute", u.Path)
	}
	q := u.Query()
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var args []string
	for _, k := range keys {
		args = append(args, k)
		if vs := q[k]; len(vs) > 0 {
			args = append(args, vs[0])
		}
	}

	var opened []*os.File
	closeAll := func() {
		for _, f := range opened {
			f.Close()
		}
	}
	pipe := func() (r, w *os.File, err error) {
		r, w, err = os.Pipe()
		if err == nil {
			opened = append(opened, r, w)
		}
		return r, w, err
	}
	outR, outW, err := pipe()
	if err != nil {
		closeAll()
		return nil, err
	}
	errR, errW, err := pipe()
	if err != nil {
		closeAll()
		return nil, err
	}
	readyR, readyW, err := pipe()
	if err != nil {
		closeAll()
		return nil, err
	}

	cmd := exec.Command(u.Path, args...)
	cmd.Env = []string{"CONTAINER_ID=" + id, "CONTAINER_NAMESPACE=" + ns}
	cmd.ExtraFiles = []*os.File{outR, errR, readyW}
	if err := cmd.Start(); err != nil {
		closeAll()
		return nil, fmt.Errorf("start logging binary: %w", err)
	}
	// The binary holds its ends now; the shim keeps only the write ends of the output pipes
	// and the read end of the ready pipe.
	outR.Close()
	errR.Close()
	readyW.Close()
	l := &logger{path: u.Path, cmd: cmd, stdout: outW, stderr: errW, exited: make(chan struct{})}
	go func() {
		l.waitErr = cmd.Wait()
		close(l.exited)
	}()
	defer func() {
		if retErr != nil {
			l.Close()
		}
	}()
	defer readyR.Close()

	if dl, ok := ctx.Deadline(); ok {
		if err := readyR.SetReadDeadline(dl); err != nil {
			return nil, fmt.Errorf("wait for the logging binary: %w", err)
		}
	}
	b := make([]byte, 1)
	if _, err := readyR.Read(b); err != nil && !errors.Is(err, io.EOF) {
		return l, fmt.Errorf("wait for the logging binary %s to be ready: %w", u.Path, err)
	}
	// A binary that exited instead of getting ready closed the pipe too; when its exit is
	// already seen it is reported now, otherwise by Close.
	select {
	case <-l.exited:
		if l.waitErr == nil {
			return l, fmt.Errorf("logging binary %s exited (status 0) before the output started", u.Path)
		}
		return l, fmt.Errorf("logging binary %s exited before the output started: %w", u.Path, l.waitErr)
	default:
	}
	return l, nil
}

// Close ends the output (the binary sees EOF on both pipes), then waits for the binary to
// exit: loggerExitGrace, then SIGTERM and loggerTermGrace, then SIGKILL. It returns once
// the binary is reaped.
func (l *logger) Close() error {
	l.stdout.Close()
	l.stderr.Close()
	select {
	case <-l.exited:
		return l.result()
	case <-time.After(loggerExitGrace):
	}
	log.L.WithField("logger", l.path).Warn("logging binary did not exit at the end of the output, sending SIGTERM")
	if err := l.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		log.L.WithError(err).Warn("signal logging binary")
	}
	select {
	case <-l.exited:
		return l.result()
	case <-time.After(loggerTermGrace):
	}
	if err := l.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		log.L.WithError(err).Warn("kill logging binary")
	}
	<-l.exited
	return l.result()
}

func (l *logger) result() error {
	if l.waitErr != nil {
		return fmt.Errorf("logging binary %s: %w", l.path, l.waitErr)
	}
	return nil
}

// stdinDrainTimeout bounds how long closing stdin waits for the copier to read what the
// client wrote before it asked for the close.
const stdinDrainTimeout = 10 * time.Second

// stdinFIFO is a process's stdin FIFO as the copier reads it. Closing it through
// closeDrained first lets the copier read what is still in the FIFO: a client writes its
// last bytes, closes its end and asks for stdin to be closed at once, and those bytes must
// reach the process.
type stdinFIFO struct {
	f io.ReadCloser
	// mu guards opened and reads.
	mu sync.Mutex
	// opened is set once a Read returned: the FIFO is open (its open waits for a writer).
	opened bool
	// reads is closed, and replaced, each time a Read returns.
	reads chan struct{}
}

func newStdinFIFO(f io.ReadCloser) *stdinFIFO {
	return &stdinFIFO{f: f, reads: make(chan struct{})}
}

func (s *stdinFIFO) Read(b []byte) (int, error) {
	n, err := s.f.Read(b)
	s.mu.Lock()
	s.opened = true
	close(s.reads)
	s.reads = make(chan struct{})
	s.mu.Unlock()
	return n, err
}

func (s *stdinFIFO) Close() error { return s.f.Close() }

// unread is the number of bytes in the FIFO that no Read has taken yet.
func (s *stdinFIFO) unread() (int, error) {
	sc, ok := s.f.(syscall.Conn)
	if !ok {
		return 0, fmt.Errorf("stdin %T has no file descriptor", s.f)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var ierr error
	// TIOCINQ is FIONREAD: the bytes waiting in a pipe.
	if err := rc.Control(func(fd uintptr) { n, ierr = unix.IoctlGetInt(int(fd), unix.TIOCINQ) }); err != nil {
		return 0, err
	}
	return n, ierr
}

// closeDrained closes the FIFO once the copier has read every byte in it (what it read is
// passed on to the process before the copier sees the close), or after stdinDrainTimeout.
// A FIFO no writer ever opened holds nothing and is closed at once.
func (s *stdinFIFO) closeDrained() error {
	timeout := time.NewTimer(stdinDrainTimeout)
	defer timeout.Stop()
	for {
		s.mu.Lock()
		opened, reads := s.opened, s.reads
		s.mu.Unlock()
		if !opened {
			break
		}
		n, err := s.unread()
		if err != nil || n == 0 {
			break
		}
		select {
		case <-reads:
		case <-timeout.C:
			log.L.WithField("bytes", n).Warn("close stdin: the process did not take what is left in the fifo")
			return s.Close()
		}
	}
	return s.Close()
}
