package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"syscall"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
	"github.com/vessel-containers/vessel/internal/sharefs"
)

// ContainerConfig describes a container to create in a sandbox.
type ContainerConfig struct {
	ID string
	// Spec is the container's OCI runtime spec as the user wrote it (host paths).
	Spec *specs.Spec
	// Rootfs is the absolute host path of the root filesystem.
	Rootfs string
	// Stdin tells whether the caller will write the init process's stdin.
	Stdin bool
}

// Container is one container in a sandbox.
type Container struct {
	sb     *Sandbox
	id     string
	rootfs string

	// mu guards state.
	mu    sync.Mutex
	state State
}

func (c *Container) getState() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

func (c *Container) setState(st State) {
	c.mu.Lock()
	c.state = st
	c.mu.Unlock()
}

// ID of the container.
func (c *Container) ID() string { return c.id }

// State of the container as the host last saw it.
func (c *Container) State() State { return c.getState() }

// CreateContainer shares the container's files with the guest and creates it there. The
// process is ready to start but has not run any user code.
func (s *Sandbox) CreateContainer(ctx context.Context, cfg ContainerConfig) (_ *Container, retErr error) {
	if err := ValidateID(cfg.ID); err != nil {
		return nil, err
	}
	if cfg.Spec == nil || cfg.Spec.Process == nil {
		return nil, fmt.Errorf("container %s: spec has no process: %w", cfg.ID, errdefs.ErrInvalidArgument)
	}
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("container", cfg.ID))

	s.mu.Lock()
	if s.state != StateRunning {
		s.mu.Unlock()
		return nil, fmt.Errorf("sandbox %s is %s: %w", s.id, s.state, errdefs.ErrFailedPrecondition)
	}
	if _, dup := s.containers[cfg.ID]; dup {
		s.mu.Unlock()
		return nil, fmt.Errorf("container %s: %w", cfg.ID, errdefs.ErrAlreadyExists)
	}
	c := &Container{sb: s, id: cfg.ID, rootfs: cfg.Rootfs, state: StateCreated}
	// Reserve the id while the slow steps below run without the lock.
	s.containers[cfg.ID] = c
	s.mu.Unlock()

	var rollback undo
	rollback.add(func(context.Context) error {
		s.mu.Lock()
		delete(s.containers, cfg.ID)
		s.mu.Unlock()
		return nil
	})
	defer func() {
		if retErr != nil {
			cctx, cancel := cleanupContext(ctx)
			defer cancel()
			rollback.run(cctx)
		}
	}()

	guestSpec, err := s.shareContainer(ctx, cfg, &rollback)
	if err != nil {
		return nil, err
	}
	specJSON, err := json.Marshal(guestSpec)
	if err != nil {
		return nil, fmt.Errorf("container %s: encode spec: %w", cfg.ID, err)
	}
	if err := s.agent.CreateContainer(ctx, &agentv1.CreateContainerRequest{
		ContainerId:  cfg.ID,
		OciSpec:      specJSON,
		Stdio:        stdioConfig(cfg.Spec.Process, cfg.Stdin),
		SandboxPidns: joinsSandboxPidNS(cfg.Spec),
	}); err != nil {
		return nil, s.explain(fmt.Errorf("container %s: %w", cfg.ID, err))
	}
	s.mu.Lock()
	err = s.save()
	s.mu.Unlock()
	if err != nil {
		_ = s.agent.RemoveContainer(ctx, cfg.ID, 0)
		return nil, err
	}
	return c, nil
}

func stdioConfig(p *specs.Process, stdin bool) *agentv1.StdioConfig {
	st := &agentv1.StdioConfig{Terminal: p.Terminal, Stdin: stdin}
	if p.ConsoleSize != nil {
		st.ConsoleHeight, st.ConsoleWidth = uint32(p.ConsoleSize.Height), uint32(p.ConsoleSize.Width)
	}
	return st
}

// shareContainer bind-mounts the rootfs and bind-mount sources into the share and returns
// the spec rewritten for the guest.
func (s *Sandbox) shareContainer(ctx context.Context, cfg ContainerConfig, rollback *undo) (*specs.Spec, error) {
	guest, err := guestSpec(cfg.Spec)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", cfg.ID, err)
	}
	rollback.add(func(ctx context.Context) error { return s.share.RemoveContainer(ctx, cfg.ID) })
	rel, err := s.share.Bind(ctx, cfg.ID, "rootfs", cfg.Rootfs, false)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", cfg.ID, err)
	}
	guest.Root.Path = sharefs.GuestPath(rel)
	for i, m := range guest.Mounts {
		if !isBind(m) {
			continue
		}
		ro := slices.Contains(m.Options, "ro")
		rel, err := s.share.Bind(ctx, cfg.ID, fmt.Sprintf("mount-%d", i), m.Source, ro)
		if err != nil {
			return nil, fmt.Errorf("container %s: mount %s: %w", cfg.ID, m.Destination, err)
		}
		guest.Mounts[i].Source = sharefs.GuestPath(rel)
	}
	return guest, nil
}

func isBind(m specs.Mount) bool {
	return m.Type == "bind" || slices.Contains(m.Options, "bind") || slices.Contains(m.Options, "rbind")
}

// guestSpec copies the spec and drops what only makes sense on the host: hooks run on the
// host, the guest agent picks the cgroup path, and namespace paths name host namespaces.
// The network namespace is dropped altogether: the VM is the pod's network boundary, so
// every container of the pod shares the guest's network namespace and its interfaces (as
// the containers of a pod share the pause container's on the host; Kata does the same).
// A namespace per container would cut containers off from the pod's network and from
// each other's localhost, and costs a netns setup and teardown in the guest.
func guestSpec(spec *specs.Spec) (*specs.Spec, error) {
	data, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("copy spec: %w", err)
	}
	var g specs.Spec
	if err := json.Unmarshal(data, &g); err != nil {
		return nil, fmt.Errorf("copy spec: %w", err)
	}
	if g.Root == nil {
		g.Root = &specs.Root{}
	}
	g.Hooks = nil
	if g.Linux != nil {
		g.Linux.CgroupsPath = ""
		// Namespace paths name host namespaces (a pod's pause process, a CNI netns); they
		// mean nothing in the guest. A pid namespace path becomes "join the sandbox's".
		ns := g.Linux.Namespaces[:0]
		for _, n := range g.Linux.Namespaces {
			if n.Type == specs.NetworkNamespace {
				continue
			}
			n.Path = ""
			ns = append(ns, n)
		}
		g.Linux.Namespaces = ns
	}
	return &g, nil
}

// joinsSandboxPidNS reports whether the spec asks to join an existing pid namespace (CRI
// sets the pause container's for pods that share their process namespace).
func joinsSandboxPidNS(spec *specs.Spec) bool {
	if spec.Linux == nil {
		return false
	}
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.PIDNamespace && ns.Path != "" {
			return true
		}
	}
	return false
}

// Container returns a container of the sandbox.
func (s *Sandbox) Container(id string) (*Container, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.containers[id]
	if !ok {
		return nil, fmt.Errorf("container %s in sandbox %s: %w", id, s.id, errdefs.ErrNotFound)
	}
	return c, nil
}

// Start runs the container's process.
func (c *Container) Start(ctx context.Context) error {
	if st := c.getState(); st != StateCreated {
		return fmt.Errorf("start container %s: it is %s, not created: %w", c.id, st, errdefs.ErrFailedPrecondition)
	}
	if err := c.sb.agent.StartContainer(ctx, c.id); err != nil {
		return c.sb.explain(fmt.Errorf("start container %s: %w", c.id, err))
	}
	c.setState(StateRunning)
	return nil
}

// Wait blocks until the process (execID "" for the init process) exits and returns its
// exit status with runc's semantics (128+signal when killed).
func (c *Container) Wait(ctx context.Context, execID string) (int, error) {
	e, err := c.WaitExit(ctx, execID)
	return e.Status, err
}

// Exit is how a process ended.
type Exit struct {
	// Status is the exit code, or 128+signal when the process was killed.
	Status int
	// OOMKilled is set when the kernel's OOM killer ended the container's process.
	OOMKilled bool
}

// WaitExit is Wait that also tells whether the process was OOM-killed.
func (c *Container) WaitExit(ctx context.Context, execID string) (Exit, error) {
	resp, err := c.sb.agent.WaitProcess(ctx, c.id, execID)
	if err != nil {
		return Exit{Status: -1}, c.sb.explain(fmt.Errorf("wait container %s process %q: %w", c.id, execID, err))
	}
	if execID == "" {
		c.setState(StateStopped)
	}
	return Exit{Status: int(resp.Status), OOMKilled: resp.OomKilled}, nil
}

// Kill sends a signal to the process, or to every process of the container when all is set.
func (c *Container) Kill(ctx context.Context, execID string, sig syscall.Signal, all bool) error {
	err := c.sb.agent.SignalProcess(ctx, &agentv1.SignalProcessRequest{ContainerId: c.id, ExecId: execID, Signal: uint32(sig), All: all})
	if err != nil {
		return c.sb.explain(fmt.Errorf("kill container %s process %q: %w", c.id, execID, err))
	}
	return nil
}

// Exec starts an additional process in the running container.
func (c *Container) Exec(ctx context.Context, execID string, p *specs.Process, stdin bool) error {
	if execID == "" {
		return fmt.Errorf("exec in container %s: empty exec id: %w", c.id, errdefs.ErrInvalidArgument)
	}
	if st := c.getState(); st != StateRunning {
		return fmt.Errorf("exec in container %s: it is %s, not running: %w", c.id, st, errdefs.ErrFailedPrecondition)
	}
	procJSON, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("exec in container %s: encode process: %w", c.id, err)
	}
	err = c.sb.agent.ExecProcess(ctx, &agentv1.ExecProcessRequest{
		ContainerId: c.id, ExecId: execID,
		Process: &agentv1.Process{Args: p.Args, Env: p.Env, Cwd: p.Cwd, OciProcess: procJSON},
		Stdio:   stdioConfig(p, stdin),
	})
	if err != nil {
		return c.sb.explain(fmt.Errorf("exec %s in container %s: %w", execID, c.id, err))
	}
	return nil
}

// ResizeTTY sets the terminal size of a process that has a terminal.
func (c *Container) ResizeTTY(ctx context.Context, execID string, rows, cols uint32) error {
	if err := c.sb.agent.TtyWinResize(ctx, c.id, execID, rows, cols); err != nil {
		return c.sb.explain(fmt.Errorf("resize tty of container %s process %q: %w", c.id, execID, err))
	}
	return nil
}

// Pause freezes every process of the container.
func (c *Container) Pause(ctx context.Context) error {
	if err := c.sb.agent.PauseContainer(ctx, c.id); err != nil {
		return c.sb.explain(fmt.Errorf("pause container %s: %w", c.id, err))
	}
	c.setState(StatePaused)
	return nil
}

// Resume thaws a paused container.
func (c *Container) Resume(ctx context.Context) error {
	if err := c.sb.agent.ResumeContainer(ctx, c.id); err != nil {
		return c.sb.explain(fmt.Errorf("resume container %s: %w", c.id, err))
	}
	c.setState(StateRunning)
	return nil
}

// DeleteContainer removes the container from the guest (killing it if it still runs) and
// unshares its files. With the VM gone only the host side is cleaned.
func (s *Sandbox) DeleteContainer(ctx context.Context, id string) error {
	c, err := s.Container(id)
	if err != nil {
		return err
	}
	var errs []error
	if s.vmAlive() {
		if err := s.agent.RemoveContainer(ctx, id, 0); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, s.explain(fmt.Errorf("remove container %s: %w", id, err)))
		}
	}
	if err := s.share.RemoveContainer(ctx, id); err != nil {
		errs = append(errs, err)
	}
	c.setState(StateStopped)
	s.mu.Lock()
	delete(s.containers, id)
	if s.state != StateStopped {
		if err := s.save(); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	s.mu.Unlock()
	return errors.Join(errs...)
}

// Processes lists the container's processes with their guest pids.
func (c *Container) Processes(ctx context.Context) ([]*agentv1.ProcessInfo, error) {
	resp, err := c.sb.agent.ListProcesses(ctx, c.id)
	if err != nil {
		return nil, c.sb.explain(fmt.Errorf("list processes of container %s: %w", c.id, err))
	}
	return resp.Processes, nil
}

// Stats reads the container's cgroup figures in the guest.
func (c *Container) Stats(ctx context.Context) (*agentv1.StatsContainerResponse, error) {
	resp, err := c.sb.agent.StatsContainer(ctx, c.id)
	if err != nil {
		return nil, c.sb.explain(fmt.Errorf("stats of container %s: %w", c.id, err))
	}
	return resp, nil
}

// Update changes the container's resource limits in the guest.
func (c *Container) Update(ctx context.Context, res *specs.LinuxResources) error {
	data, err := json.Marshal(res)
	if err != nil {
		return fmt.Errorf("update container %s: encode resources: %w", c.id, err)
	}
	err = c.sb.agent.UpdateContainer(ctx, &agentv1.UpdateContainerRequest{ContainerId: c.id, Resources: &agentv1.LinuxResources{OciResources: data}})
	if err != nil {
		return c.sb.explain(fmt.Errorf("update container %s: %w", c.id, err))
	}
	return nil
}
