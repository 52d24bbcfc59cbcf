//go:build linux

package libct

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
)

// Stdio is what a process gets as standard streams. Nil Stdin means /dev/null. With
// ConsoleSocket set, the process gets a new terminal whose master is sent over the socket,
// and Stdin/Stdout/Stderr are ignored.
type Stdio struct {
	Stdin, Stdout, Stderr *os.File
	ConsoleSocket         *os.File
	ConsoleWidth          uint16
	ConsoleHeight         uint16
}

// Process is a process to start in a container, then to wait for.
type Process struct {
	p *libcontainer.Process
	// disown ends the process's ownership in the orphan reaper (Container.Start); nil
	// before Start.
	disown func()
}

// NewProcess converts an OCI process. init marks the container's first process; mounts
// are the container's (a RLIMIT_AS is set by a last step of the process when they mount
// /proc: rlimitexec.go).
func NewProcess(sp *specs.Process, init bool, mounts []specs.Mount, stdio Stdio) (*Process, error) {
	if sp == nil {
		return nil, fmt.Errorf("%w: process is missing", errdefs.ErrInvalidArgument)
	}
	if len(sp.Args) == 0 {
		return nil, fmt.Errorf("%w: process.args is empty", errdefs.ErrInvalidArgument)
	}
	cwd := sp.Cwd
	if cwd == "" {
		cwd = "/"
	}
	nnp := sp.NoNewPrivileges
	lp := &libcontainer.Process{
		Args:            sp.Args,
		Env:             sp.Env,
		UID:             int(sp.User.UID),
		GID:             int(sp.User.GID),
		Cwd:             cwd,
		Label:           sp.SelinuxLabel,
		NoNewPrivileges: &nnp,
		AppArmorProfile: sp.ApparmorProfile,
		Scheduler:       sp.Scheduler,
		IOPriority:      sp.IOPriority,
		Init:            init,
		ConsoleWidth:    stdio.ConsoleWidth,
		ConsoleHeight:   stdio.ConsoleHeight,
	}
	if sp.ConsoleSize != nil && lp.ConsoleWidth == 0 && lp.ConsoleHeight == 0 {
		lp.ConsoleWidth = uint16(sp.ConsoleSize.Width)
		lp.ConsoleHeight = uint16(sp.ConsoleSize.Height)
	}
	if c := sp.Capabilities; c != nil {
		lp.Capabilities = &configs.Capabilities{
			Bounding:    c.Bounding,
			Effective:   c.Effective,
			Inheritable: c.Inheritable,
			Permitted:   c.Permitted,
			Ambient:     c.Ambient,
		}
	}
	for _, g := range sp.User.AdditionalGids {
		lp.AdditionalGroups = append(lp.AdditionalGroups, int(g))
	}
	for _, rl := range sp.Rlimits {
		n, err := rlimitNumber(rl.Type)
		if err != nil {
			return nil, fmt.Errorf("process.rlimits: %w", err)
		}
		if rl.Soft > rl.Hard {
			return nil, fmt.Errorf("%w: process.rlimits: %s soft limit %d is above the hard limit %d", errdefs.ErrInvalidArgument, rl.Type, rl.Soft, rl.Hard)
		}
		if n == unix.RLIMIT_AS && rlimitExecBuilt && mountsProc(mounts) {
			lp.Args = rlimitExecArgs(rl.Soft, rl.Hard, sp.Args) // rlimitexec.go
			continue
		}
		lp.Rlimits = append(lp.Rlimits, configs.Rlimit{Type: n, Hard: rl.Hard, Soft: rl.Soft})
	}
	aff, err := configs.ConvertCPUAffinity(sp.ExecCPUAffinity)
	if err != nil {
		return nil, fmt.Errorf("%w: process.execCPUAffinity: %w", errdefs.ErrInvalidArgument, err)
	}
	lp.CPUAffinity = aff

	if stdio.ConsoleSocket != nil {
		lp.ConsoleSocket = stdio.ConsoleSocket
	} else {
		// Typed nil *os.File would not be nil as an io.Reader: assign only real files.
		if stdio.Stdin != nil {
			lp.Stdin = stdio.Stdin
		}
		if stdio.Stdout != nil {
			lp.Stdout = stdio.Stdout
		}
		if stdio.Stderr != nil {
			lp.Stderr = stdio.Stderr
		}
	}
	return &Process{p: lp}, nil
}

// Pid is the process id in the agent's pid namespace, 0 before Start.
func (p *Process) Pid() int {
	pid, err := p.p.Pid()
	if err != nil {
		return 0
	}
	return pid
}

// Signal sends sig to the process.
func (p *Process) Signal(sig unix.Signal) error {
	if err := p.p.Signal(sig); err != nil {
		if errors.Is(err, os.ErrProcessDone) {
			return fmt.Errorf("%w: process already exited", errdefs.ErrNotFound)
		}
		return fmt.Errorf("signal process: %w", err)
	}
	return nil
}

// Wait waits for the process to exit and returns its status the way runc reports it: the exit
// code, or 128+signal when a signal killed it. Call it once.
func (p *Process) Wait() (int, error) {
	ps, err := p.p.Wait()
	if p.disown != nil {
		p.disown()
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		if ps == nil {
			return -1, fmt.Errorf("wait: %w", err)
		}
	}
	if ps == nil {
		return -1, errors.New("wait: no process state")
	}
	ws, ok := ps.Sys().(syscall.WaitStatus)
	if !ok {
		return ps.ExitCode(), nil
	}
	return ExitStatus(ws), nil
}

// ExitStatus converts a wait status: exit code, or 128+signal.
func ExitStatus(ws syscall.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}
