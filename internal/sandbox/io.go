package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/containerd/log"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
)

// streamChunk is the most one stdin write to the agent carries.
const streamChunk = 256 << 10

// outputChunk is the most one output read asks the agent for: as much as the agent
// buffers per stream, so that output that piled up while a response was on its way comes
// back in one response.
const outputChunk = 1 << 20

// IO connects a process's stdio to the caller. Nil fields are not connected: a nil Stdout
// still drains the guest's output so the process never blocks on a full pipe.
type IO struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

// Streams copies one process's stdio between the caller and the guest. It owns its
// goroutines: Wait returns after the output streams have been drained to EOF, Close stops
// them early.
type Streams struct {
	cancel context.CancelFunc
	outWG  sync.WaitGroup

	// mu guards errs.
	mu   sync.Mutex
	errs []error
}

// Attach starts copying stdio for a process (execID "" for the init process): after
// CreateContainer for the init process, after Exec for an exec'd one. The guest keeps
// output until it is read, so nothing written before Attach is lost.
func (c *Container) Attach(ctx context.Context, execID string, pio IO) *Streams {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	st := &Streams{cancel: cancel}
	agent := c.sb.agent
	read := func(name string, fn func(context.Context, string, string, uint32) (*agentv1.ReadStreamResponse, error), w io.Writer) {
		defer st.outWG.Done()
		if w == nil {
			w = io.Discard
		}
		for {
			resp, err := fn(ctx, c.id, execID, outputChunk)
			if err != nil {
				if ctx.Err() == nil {
					st.addErr(c.sb.explain(fmt.Errorf("%s of container %s process %q: %w", name, c.id, execID, err)))
				}
				return
			}
			if len(resp.Data) > 0 {
				if _, err := w.Write(resp.Data); err != nil {
					// Keep draining so the guest process does not block, but report it.
					st.addErr(fmt.Errorf("write %s of container %s: %w", name, c.id, err))
					w = io.Discard
				}
			}
			if resp.Eof {
				return
			}
		}
	}
	st.outWG.Add(2)
	go read("stdout", agent.ReadStdout, pio.Stdout)
	go read("stderr", agent.ReadStderr, pio.Stderr)

	if pio.Stdin != nil {
		// This goroutine ends at EOF of Stdin, at the first failed write (process gone or
		// Close called), or never if Stdin blocks forever: a Read cannot be interrupted.
		go func() {
			buf := make([]byte, streamChunk)
			for {
				n, rerr := pio.Stdin.Read(buf)
				if n > 0 {
					if _, err := agent.WriteStdin(ctx, c.id, execID, buf[:n]); err != nil {
						log.G(ctx).WithError(err).Debug("stdin closed by the guest")
						return
					}
				}
				if rerr != nil {
					if !errors.Is(rerr, io.EOF) {
						log.G(ctx).WithError(rerr).Warn("read stdin")
					}
					if err := agent.CloseStdin(ctx, c.id, execID); err != nil && ctx.Err() == nil {
						log.G(ctx).WithError(err).Debug("close stdin")
					}
					return
				}
			}
		}()
	}
	return st
}

func (st *Streams) addErr(err error) {
	st.mu.Lock()
	st.errs = append(st.errs, err)
	st.mu.Unlock()
}

// Wait blocks until stdout and stderr reached EOF (or failed) and returns copy errors.
func (st *Streams) Wait() error {
	st.outWG.Wait()
	st.mu.Lock()
	defer st.mu.Unlock()
	return errors.Join(st.errs...)
}

// Close stops copying and waits for the output goroutines to return.
func (st *Streams) Close() {
	st.cancel()
	st.outWG.Wait()
}
