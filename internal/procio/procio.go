// Package procio is the host side of a container process's stdio for the vessel CLI. The
// shim reaches a process's stdio through FIFOs, as containerd's shims do; procio makes those
// FIFOs, copies between them and the caller's streams (its own stdio, or a pseudo-terminal),
// creates that pseudo-terminal and hands its master to a --console-socket as runc does.
package procio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/containerd/fifo"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"
)

// FIFOs are the paths of one process's stdio FIFOs, as the task API takes them. Stderr is
// empty for a process with a terminal: its output is all on the terminal.
type FIFOs struct {
	Stdin, Stdout, Stderr string
}

// MakeFIFOs creates the FIFOs of process name in dir.
func MakeFIFOs(dir, name string, terminal bool) (FIFOs, error) {
	f := FIFOs{
		Stdin:  filepath.Join(dir, name+".stdin"),
		Stdout: filepath.Join(dir, name+".stdout"),
	}
	if !terminal {
		f.Stderr = filepath.Join(dir, name+".stderr")
	}
	for _, p := range f.paths() {
		if err := unix.Mkfifo(p, 0o600); err != nil {
			f.Remove()
			return FIFOs{}, fmt.Errorf("create fifo %s: %w", p, err)
		}
	}
	return f, nil
}

func (f FIFOs) paths() []string {
	var ps []string
	for _, p := range []string{f.Stdin, f.Stdout, f.Stderr} {
		if p != "" {
			ps = append(ps, p)
		}
	}
	return ps
}

// Remove deletes the FIFOs.
func (f FIFOs) Remove() {
	for _, p := range f.paths() {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			log.L.WithError(err).Debug("remove fifo")
		}
	}
}

// Relay copies one process's stdio between the caller's streams and its FIFOs. It owns its
// goroutines: the output copiers end at EOF (the shim closes its end once the process
// exited and its output drained) or at Close; the stdin copier ends at EOF of its input, at
// the first failed write, or at Close when the input is pollable (a pipe or a terminal
// opened by vessel). A blocking input such as an inherited stdin cannot be interrupted: its
// copier then ends with the process.
type Relay struct {
	fifos  FIFOs
	ctx    context.Context
	cancel context.CancelFunc
	outWG  sync.WaitGroup

	// mu guards stdin, stdout, stderr and in.
	mu     sync.Mutex
	stdin  io.WriteCloser
	stdout io.ReadCloser
	stderr io.ReadCloser
	in     io.Closer
}

// Open starts opening the FIFOs' far ends, as containerd's client does before it hands
// FIFOs to a shim: stdin for writing, stdout and stderr for reading. The opens complete in
// the background when the shim opens its ends (the shim's opens, in turn, do not block);
// reads and writes wait for them. Call it before the task API call that hands the FIFOs
// to the shim.
func Open(ctx context.Context, f FIFOs) (*Relay, error) {
	ctx, cancel := context.WithCancel(ctx)
	r := &Relay{fifos: f, ctx: ctx, cancel: cancel}
	var err error
	defer func() {
		if err != nil {
			r.Close()
		}
	}()
	if r.stdin, err = fifo.OpenFifo(ctx, f.Stdin, unix.O_WRONLY|unix.O_NONBLOCK, 0); err != nil {
		return nil, fmt.Errorf("open stdin fifo: %w", err)
	}
	if r.stdout, err = fifo.OpenFifo(ctx, f.Stdout, unix.O_RDONLY|unix.O_NONBLOCK, 0); err != nil {
		return nil, fmt.Errorf("open stdout fifo: %w", err)
	}
	if f.Stderr != "" {
		if r.stderr, err = fifo.OpenFifo(ctx, f.Stderr, unix.O_RDONLY|unix.O_NONBLOCK, 0); err != nil {
			return nil, fmt.Errorf("open stderr fifo: %w", err)
		}
	}
	return r, nil
}

// Start copies in to the process's stdin (closing it at EOF of in, so the process sees EOF
// too) and its output to out and errOut (errOut is unused with a terminal). Call it once
// the shim holds the FIFOs: after Create, or after Start for an exec'd process.
func (r *Relay) Start(in io.Reader, out, errOut io.Writer) {
	copyOut := func(src io.Reader, dst io.Writer) {
		defer r.outWG.Done()
		if _, err := io.Copy(dst, src); err != nil && r.ctx.Err() == nil && !errors.Is(err, syscall.EIO) {
			log.G(r.ctx).WithError(err).Debug("copy output")
		}
	}
	r.mu.Lock()
	if r.stdout != nil {
		r.outWG.Add(1)
		go copyOut(r.stdout, out)
	}
	if r.stderr != nil {
		r.outWG.Add(1)
		go copyOut(r.stderr, errOut)
	}
	if c, ok := in.(io.Closer); ok {
		r.in = c
	}
	r.mu.Unlock()
	if in == nil {
		in = eof{}
	}
	go r.copyStdin(in)
}

type eof struct{}

func (eof) Read([]byte) (int, error) { return 0, io.EOF }

// copyStdin copies in to the stdin FIFO and closes the FIFO at EOF.
func (r *Relay) copyStdin(in io.Reader) {
	r.mu.Lock()
	w := r.stdin
	r.mu.Unlock()
	defer w.Close()
	if _, err := io.Copy(w, in); err != nil && r.ctx.Err() == nil && !errors.Is(err, syscall.EIO) {
		log.G(r.ctx).WithError(err).Debug("copy stdin")
	}
}

// Wait blocks until the process's output reached EOF.
func (r *Relay) Wait() {
	r.outWG.Wait()
}

// Close stops copying: it closes the FIFOs (and a pollable input) and waits for the output
// copiers.
func (r *Relay) Close() {
	r.cancel()
	r.mu.Lock()
	closers := []io.Closer{r.stdin, r.stdout, r.stderr, r.in}
	r.mu.Unlock()
	for _, c := range closers {
		if c != nil {
			c.Close()
		}
	}
	r.outWG.Wait()
}
