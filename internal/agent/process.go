//go:build linux

package agent

import (
	"context"
	"fmt"
	"sync"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/vessel-containers/vessel/internal/agent/guard"
)

// runner is a started process the agent waits for: a container process
// (*libct.Process) or a debug process in the guest itself (debugRunner, debug.go).
type runner interface {
	Pid() int
	Signal(sig unix.Signal) error
	// Wait returns the exit code, or 128+signal; it is called once.
	Wait() (int, error)
}

// process is a container's init or exec process, or a debug process, as the agent tracks
// it.
type process struct {
	// containerID is empty for a debug process.
	containerID string
	// execID is empty for the init process.
	execID string
	proc   runner
	io     *processIO
	pid    int

	// exited is closed once the process was reaped; status and oomKilled are set before.
	exited    chan struct{}
	status    int
	oomKilled bool

	// mu guards waited.
	mu sync.Mutex
	// waited is set once a WaitProcess returned the status to the host.
	waited bool
}

func newProcess(containerID, execID string, proc runner, pio *processIO) *process {
	return &process{
		containerID: containerID,
		execID:      execID,
		proc:        proc,
		io:          pio,
		exited:      make(chan struct{}),
	}
}

// name is how logs and errors name the process.
func (p *process) name() string {
	if p.containerID == "" {
		return fmt.Sprintf("debug process %q", p.execID)
	}
	if p.execID == "" {
		return fmt.Sprintf("init of container %q", p.containerID)
	}
	return fmt.Sprintf("exec %q of container %q", p.execID, p.containerID)
}

// watch starts the goroutine that reaps the process; it ends when the process exits. oomKills
// reads the container's OOM kill count: the process counts as OOM-killed when SIGKILL ended
// it and the count grew since base (taken when the process started).
func (p *process) watch(ctx context.Context, base uint64, oomKills func() uint64, onExit func(*process)) {
	p.pid = p.proc.Pid()
	guard.Go(ctx, "wait "+p.name(), func() {
		status, err := p.proc.Wait()
		if err != nil {
			log.G(ctx).WithError(err).Warnf("wait for %s", p.name())
			status = 255
		}
		p.status = status
		p.oomKilled = status == 128+int(unix.SIGKILL) && oomKills() > base
		close(p.exited)
		log.G(ctx).WithField("status", status).Debugf("%s (pid %d) exited", p.name(), p.pid)
		if onExit != nil {
			onExit(p)
		}
	}, func(*guard.PanicError) {
		// Fail the wait cleanly: waiters see the process as exited with status 255.
		if !p.hasExited() {
			p.status = 255
			close(p.exited)
		}
	})
}

// hasExited reports whether the process was reaped.
func (p *process) hasExited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// wait blocks until the process exits or ctx is done.
func (p *process) wait(ctx context.Context) (int, bool, error) {
	select {
	case <-p.exited:
		p.mu.Lock()
		p.waited = true
		p.mu.Unlock()
		return p.status, p.oomKilled, nil
	case <-ctx.Done():
		return 0, false, ctx.Err()
	}
}

// done reports whether the host has everything: the exit status and both streams to EOF.
func (p *process) done() bool {
	if !p.hasExited() {
		return false
	}
	p.mu.Lock()
	waited := p.waited
	p.mu.Unlock()
	// A terminal has no stderr: the host need not read it to the end.
	return waited && p.io.stdout.drained() && (p.io.tty != nil || p.io.stderr.drained())
}
