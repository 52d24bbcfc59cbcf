package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sync"
	"syscall"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
	"github.com/vessel-containers/vessel/internal/config"
	"github.com/vessel-containers/vessel/internal/oci"
	"github.com/vessel-containers/vessel/internal/persist"
	"github.com/vessel-containers/vessel/internal/sharefs"
	"github.com/vessel-containers/vessel/internal/tracing"
)

// ContainerConfig describes a container to create in a sandbox.
type ContainerConfig struct {
	// Plan is the validated container plan (oci.ContainerConfig); its Rootfs is the host
	// path of the root file system, mounted by the caller.
	Plan *oci.Container
	// Stdin tells whether the caller will write the init process's stdin.
	Stdin bool
	// InitLog has the guest record libcontainer's debug log of the init's setup, which
	// Container.TakeInitLog returns.
	InitLog bool
	// IDMappedSources are the indexes of Plan.Mounts whose sources the caller made show
	// host owners to the VMM already (an idmapped overlay of an overlay's layers): with
	// hypervisor.vmm_file_ids = "container" they are shared without a second idmapping.
	IDMappedSources map[int]bool
}

// Container is one container in a sandbox.
type Container struct {
	sb     *Sandbox
	id     string
	rootfs string
	// resources are the container's CPU and memory limits that size the VM (Config.Resize);
	// sb.mu guards them.
	resources oci.Resources
	// disks are the host devices and files the container holds disks of (disk.go); set
	// by CreateContainer, released by DeleteContainer.
	disks []diskKey
	// mounts and devices are what the persisted state reports of the container; set by
	// CreateContainer before the container is saved, never changed.
	mounts  []persist.Mount
	devices []persist.Device

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
	plan := cfg.Plan
	if plan == nil {
		return nil, fmt.Errorf("create container in sandbox %s: no container plan: %w", s.id, errdefs.ErrInvalidArgument)
	}
	id := plan.ID
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("container", id))
	ctx, span := tracing.Start(ctx, "container create", trace.WithAttributes(attribute.String("container.id", id)))
	defer func() { tracing.End(span, retErr) }()

	s.mu.Lock()
	if s.state != StateRunning {
		s.mu.Unlock()
		return nil, fmt.Errorf("sandbox %s is %s: %w", s.id, s.state, errdefs.ErrFailedPrecondition)
	}
	if _, dup := s.containers[id]; dup {
		s.mu.Unlock()
		return nil, fmt.Errorf("container %s: %w", id, errdefs.ErrAlreadyExists)
	}
	c := &Container{sb: s, id: id, rootfs: plan.Rootfs, state: StateCreated, resources: plan.Resources}
	// Reserve the id while the slow steps below run without the lock.
	s.containers[id] = c
	s.mu.Unlock()

	var rollback undo
	rollback.add(func(context.Context) error {
		s.mu.Lock()
		delete(s.containers, id)
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
	// The VM grows before the container exists, so its processes find the vCPUs and
	// memory its limits ask for from the start.
	if err := s.fit(ctx); err != nil { // resize.go
		return nil, fmt.Errorf("container %s: %w", id, err)
	}
	// Interfaces a hook of an earlier container added come before this one exists.
	if err := s.SyncNetwork(ctx); err != nil { // network.go
		return nil, fmt.Errorf("container %s: %w", id, err)
	}

	var guestSpec *specs.Spec
	var err error
	if s.copyMode() {
		guestSpec, err = s.copyContainer(ctx, plan, &rollback) // copy.go
	} else {
		guestSpec, err = s.shareContainer(ctx, plan, cfg.IDMappedSources, &rollback)
	}
	if err != nil {
		return nil, err
	}
	storages, devices, err := s.plugDisks(ctx, c, plan, guestSpec, &rollback) // disk.go
	if err != nil {
		return nil, err
	}
	storages = append(storages, memoryStorages(plan)...) // memory.go
	specJSON, err := json.Marshal(guestSpec)
	if err != nil {
		return nil, fmt.Errorf("container %s: encode spec: %w", id, err)
	}
	if err := s.agent.CreateContainer(ctx, &agentv1.CreateContainerRequest{
		ContainerId:       id,
		OciSpec:           specJSON,
		Storages:          storages,
		Devices:           devices,
		Stdio:             stdioConfig(plan.Process.Terminal, plan.Process.ConsoleSize, cfg.Stdin),
		SandboxPidns:      plan.JoinSandboxPidNS,
		SandboxNamespaces: namespaceNames(plan.SandboxNamespaces),
		InitLog:           cfg.InitLog,
	}); err != nil {
		return nil, s.explain(fmt.Errorf("container %s: %w", id, err))
	}
	rollback.add(func(ctx context.Context) error {
		if err := s.agent.RemoveContainer(ctx, id, 0); err != nil {
			return fmt.Errorf("remove container %s from the guest: %w", id, err)
		}
		return nil
	})
	if plan.RootfsReadonly && !plan.RootfsOnDisks() && !s.copyMode() {
		if err := s.share.SetReadOnly(ctx, id, rootfsShare); err != nil {
			return nil, fmt.Errorf("container %s: %w", id, err)
		}
	}
	for _, m := range guestSpec.Mounts {
		c.mounts = append(c.mounts, persist.Mount{Destination: m.Destination, Type: m.Type, Source: m.Source})
	}
	for _, d := range devices {
		c.devices = append(c.devices, persist.Device{ID: d.GetId(), Type: d.GetType(), Address: d.GetVmPath(), ContainerPath: d.GetContainerPath()})
	}
	s.mu.Lock()
	err = s.save()
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return c, nil
}

func namespaceNames(types []specs.LinuxNamespaceType) []string {
	out := make([]string, len(types))
	for i, t := range types {
		out[i] = string(t)
	}
	return out
}

func stdioConfig(terminal bool, size *specs.Box, stdin bool) *agentv1.StdioConfig {
	st := &agentv1.StdioConfig{Terminal: terminal, Stdin: stdin}
	if size != nil {
		st.ConsoleHeight, st.ConsoleWidth = uint32(size.Height), uint32(size.Width)
	}
	return st
}

// shareContainer mounts the rootfs and bind-mount sources into the share and returns the
// guest spec (oci.GuestSpec) with those paths rewritten to the guest's. Each source is
// shared as recursively and as read-only as the container is given it (shareOptions), so
// guest root reaching the share outside the container gets no more than the container.
func (s *Sandbox) shareContainer(ctx context.Context, plan *oci.Container, mapped map[int]bool, rollback *undo) (*specs.Spec, error) {
	guest, err := oci.GuestSpec(plan, s.cfg.Effective)
	if err != nil {
		return nil, err
	}
	id := plan.ID
	rollback.add(func(ctx context.Context) error { return s.unshareContainer(ctx, id) }) // virtiofs.go
	// The root file system stays writable here even when root.readonly is set: the
	// container runtime in the guest creates mount points in it before it makes it
	// read-only; CreateContainer makes the host side read-only once that is done. A rootfs
	// on a disk is not shared: plugDisks attaches it.
	if !plan.RootfsOnDisks() {
		rel, err := s.share.Bind(ctx, id, rootfsShare, plan.Rootfs, sharefs.BindOptions{Recursive: true})
		if err != nil {
			return nil, fmt.Errorf("container %s: %w", id, err)
		}
		guest.Root.Path = sharefs.GuestPath(rel)
	}
	// With hypervisor.vmm_file_ids = "container" the volumes are idmapped into the VMM's
	// ids (the root file system comes idmapped already: the shim mounted it so, as it
	// does the volumes on overlays, which IDMappedSources lists).
	userns, err := s.idmapUserNS() // userns.go
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", id, err)
	}
	if userns != nil {
		defer userns.Close()
	}
	mounts := make([]specs.Mount, 0, len(guest.Mounts))
	for i, m := range guest.Mounts {
		if _, mem := plan.MemoryVolume(i); mem || !oci.IsBind(m) || oci.IsGuestKernelBind(m) {
			mounts = append(mounts, m)
			continue
		}
		if err := notBlockDevice(m); err != nil {
			return nil, fmt.Errorf("container %s: %w", id, err)
		}
		so := shareOptions(m.Options)
		if !mapped[i] {
			so.IDMap = userns
		}
		var subs []specs.Mount
		if so.TopReadOnly {
			// Listed before the share is made: the clone has exactly these submounts.
			if subs, err = submountBinds(m); err != nil {
				return nil, fmt.Errorf("container %s: %w", id, err)
			}
		}
		rel, err := s.share.Bind(ctx, id, fmt.Sprintf("mount-%d", i), m.Source, so)
		if err != nil && userns != nil {
			return nil, fmt.Errorf("container %s: mount %s (hypervisor.vmm_file_ids = %q shares volumes idmapped; %q shares them as they are): %w",
				id, m.Destination, config.VMMFileIDsContainer, config.VMMFileIDsSandbox, err)
		}
		if err != nil {
			return nil, fmt.Errorf("container %s: mount %s: %w", id, m.Destination, err)
		}
		m.Source = sharefs.GuestPath(rel)
		mounts = append(mounts, m)
		for _, sub := range subs {
			sub.Source = path.Join(m.Source, sub.Source)
			mounts = append(mounts, sub)
		}
	}
	guest.Mounts = mounts
	return guest, nil
}

// rootfsShare names the container's root file system in the share.
const rootfsShare = "rootfs"

// shareOptions reads a bind mount's options as runc does: `rbind` clones the submounts
// too; `ro`/`rw` set the top mount's read-only flag and `rro`/`rrw` the whole tree's, the
// last of each pair winning. The shared tree is as read-only on the host as the container
// is given it: `rro` makes every mount of it read-only, `ro` the top one (on a plain bind
// only the top mount is shared at all), so guest root reaching the share gets no more than
// the container. With `rslave` or `rshared` the host's later mounts under the source reach
// the guest (host-to-container propagation); the guest's mounts never reach the host.
func shareOptions(options []string) sharefs.BindOptions {
	var o sharefs.BindOptions
	top, tree := false, false
	for _, opt := range options {
		switch opt {
		case "rbind":
			o.Recursive = true
		case "ro":
			top = true
		case "rw":
			top = false
		case "rro":
			tree = true
		case "rrw":
			tree = false
		case "rslave", "slave", "rshared", "shared":
			o.Slave = true
		case "rprivate", "private":
			o.Slave = false
		}
	}
	switch {
	case tree, top && !o.Recursive:
		o.ReadOnly = true
	case top:
		o.TopReadOnly = true
	}
	return o
}

// ReadOnlyBind tells whether a bind mount with options is read-only for the container at
// its top (`ro`, the last of `ro` and `rw`) or throughout (`rro`).
func ReadOnlyBind(options []string) bool {
	o := shareOptions(options)
	return o.ReadOnly || o.TopReadOnly
}

// submountBinds are the guest mounts that keep a top-only read-only recursive bind's
// submounts writable, as runc's `ro` leaves them. In the guest a shared tree is one 9p
// file system, so a read-only bind of it covers its submounts too; each host submount
// below source gets a writable bind of its own at the same place under the destination,
// shallowest first. Their sources are relative to the shared tree's guest path.
func submountBinds(m specs.Mount) ([]specs.Mount, error) {
	src, err := filepath.EvalSymlinks(m.Source)
	if err != nil {
		return nil, fmt.Errorf("mount %s: source %s: %w", m.Destination, m.Source, err)
	}
	mps, err := sharefs.MountsUnder(src)
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", m.Destination, err)
	}
	slices.Reverse(mps) // MountsUnder lists deepest first
	var out []specs.Mount
	for _, mp := range mps {
		rel, err := filepath.Rel(src, mp)
		if err != nil || rel == "." || slices.ContainsFunc(out, func(o specs.Mount) bool { return o.Destination == path.Join(m.Destination, rel) }) {
			continue
		}
		opts := []string{"rbind", "rw"}
		for _, o := range m.Options {
			switch o {
			case "bind", "rbind", "ro", "rw", "rro", "rrw":
			default:
				opts = append(opts, o)
			}
		}
		out = append(out, specs.Mount{Destination: path.Join(m.Destination, rel), Type: "bind", Source: rel, Options: opts})
	}
	return out, nil
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
func (c *Container) Start(ctx context.Context) (retErr error) {
	ctx, span := tracing.Start(ctx, "container start", trace.WithAttributes(attribute.String("container.id", c.id)))
	defer func() { tracing.End(span, retErr) }()
	if st := c.getState(); st != StateCreated {
		return fmt.Errorf("start container %s: it is %s, not created: %w", c.id, st, errdefs.ErrFailedPrecondition)
	}
	// The create-time hooks (createRuntime, prestart) have run: the network they set up
	// in the pod's namespace is there before the process runs.
	if err := c.sb.SyncNetwork(ctx); err != nil { // network.go
		return fmt.Errorf("start container %s: %w", c.id, err)
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
// Once the sandbox is deleted or its VM has exited, no process of it is left to signal:
// Kill then fails with ErrNotFound, as for a process that has exited.
func (c *Container) Kill(ctx context.Context, execID string, sig syscall.Signal, all bool) (retErr error) {
	ctx, span := tracing.Start(ctx, "container kill", trace.WithAttributes(attribute.String("container.id", c.id), attribute.Int("signal", int(sig))))
	defer func() { tracing.End(span, retErr) }()
	c.sb.mu.Lock()
	stopped := c.sb.state == StateStopped
	c.sb.mu.Unlock()
	if stopped || !c.sb.vmAlive() {
		return fmt.Errorf("kill container %s process %q: the sandbox's VM is stopped, and every process in it with it: %w", c.id, execID, errdefs.ErrNotFound)
	}
	err := c.sb.agent.SignalProcess(ctx, &agentv1.SignalProcessRequest{ContainerId: c.id, ExecId: execID, Signal: uint32(sig), All: all})
	if err != nil {
		err = c.sb.explain(fmt.Errorf("kill container %s process %q: %w", c.id, execID, err))
		if !c.sb.vmAlive() && !errdefs.IsNotFound(err) {
			err = fmt.Errorf("%w (every process in the VM is gone: %w)", err, errdefs.ErrNotFound)
		}
		return err
	}
	return nil
}

// ExecOptions change how Exec starts a process.
type ExecOptions struct {
	// Stdin tells whether the caller will write the process's stdin.
	Stdin bool
	// IgnorePaused lets an exec into a paused container wait for the resume, as runc exec
	// --ignore-paused: Exec then returns once the container is resumed and the process
	// started. Without it a paused container refuses the exec.
	IgnorePaused bool
	// InitLog has the guest record libcontainer's debug log of the process's setup, which
	// TakeInitLog returns.
	InitLog bool
}

// Exec starts an additional process in the created or running container (as runc, an
// exec into a created container joins its init's namespaces), or in a paused one with
// o.IgnorePaused once it is resumed.
func (c *Container) Exec(ctx context.Context, execID string, p *specs.Process, o ExecOptions) (retErr error) {
	ctx, span := tracing.Start(ctx, "container exec", trace.WithAttributes(attribute.String("container.id", c.id), attribute.String("exec.id", execID)))
	defer func() { tracing.End(span, retErr) }()
	if execID == "" {
		return fmt.Errorf("exec in container %s: empty exec id: %w", c.id, errdefs.ErrInvalidArgument)
	}
	switch st := c.getState(); {
	case st == StateRunning, st == StateCreated:
	case st == StatePaused && o.IgnorePaused:
	case st == StatePaused:
		return fmt.Errorf("exec in container %s: it is paused (an exec that ignores the pause waits for the resume): %w", c.id, errdefs.ErrFailedPrecondition)
	default:
		return fmt.Errorf("exec in container %s: it is %s, not created or running: %w", c.id, st, errdefs.ErrFailedPrecondition)
	}
	procJSON, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("exec in container %s: encode process: %w", c.id, err)
	}
	err = c.sb.agent.ExecProcess(ctx, &agentv1.ExecProcessRequest{
		ContainerId: c.id, ExecId: execID,
		Process:      &agentv1.Process{Args: p.Args, Env: p.Env, Cwd: p.Cwd, OciProcess: procJSON},
		Stdio:        stdioConfig(p.Terminal, p.ConsoleSize, o.Stdin),
		InitLog:      o.InitLog,
		IgnorePaused: o.IgnorePaused,
	})
	if err != nil {
		return c.sb.explain(fmt.Errorf("exec %s in container %s: %w", execID, c.id, err))
	}
	return nil
}

// TakeInitLog returns what libcontainer logged in the guest while it set up the init
// (execID empty) or an exec process whose start asked for it (InitLog), and has the
// guest forget it.
func (c *Container) TakeInitLog(ctx context.Context, execID string) ([]*agentv1.LogEntry, error) {
	entries, err := c.sb.agent.TakeInitLog(ctx, c.id, execID)
	if err != nil {
		return nil, c.sb.explain(fmt.Errorf("init log of container %s process %q: %w", c.id, execID, err))
	}
	return entries, nil
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
func (s *Sandbox) DeleteContainer(ctx context.Context, id string) (retErr error) {
	ctx, span := tracing.Start(ctx, "container delete", trace.WithAttributes(attribute.String("container.id", id)))
	defer func() { tracing.End(span, retErr) }()
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
	if err := s.unshareContainer(ctx, id); err != nil { // virtiofs.go
		errs = append(errs, err)
	}
	if err := s.uncopyContainer(ctx, id); err != nil { // copy.go
		errs = append(errs, err)
	}
	if err := s.releaseDisks(ctx, c); err != nil { // disk.go
		errs = append(errs, fmt.Errorf("container %s: %w", id, err))
	}
	// Interfaces the manager removed with the container leave the VM.
	if s.vmAlive() {
		if err := s.SyncNetwork(ctx); err != nil { // network.go
			errs = append(errs, fmt.Errorf("container %s: %w", id, err))
		}
	}
	c.setState(StateStopped)
	s.mu.Lock()
	delete(s.containers, id)
	if s.state != StateStopped {
		if err := s.save(); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	others := len(s.containers)
	s.mu.Unlock()
	// The VM gives back what the container's limits had it take, unless the sandbox
	// ends with this container anyway.
	if others > 0 && s.vmAlive() {
		if err := s.trim(ctx); err != nil { // resize.go
			errs = append(errs, fmt.Errorf("container %s removed, but %w", id, err))
		}
	}
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
	// The VM grows first, so that raised limits find their vCPUs and memory in the guest,
	// and loses vCPUs last, once lowered limits are in force.
	s := c.sb
	s.mu.Lock()
	before := c.resources
	c.resources = before.Updated(res)
	s.mu.Unlock()
	if err := s.fit(ctx); err != nil { // resize.go
		s.mu.Lock()
		c.resources = before
		s.mu.Unlock()
		return fmt.Errorf("update container %s: %w", c.id, err)
	}
	err = s.agent.UpdateContainer(ctx, &agentv1.UpdateContainerRequest{ContainerId: c.id, Resources: &agentv1.LinuxResources{OciResources: data}})
	if err != nil {
		s.mu.Lock()
		c.resources = before
		s.mu.Unlock()
		return s.explain(fmt.Errorf("update container %s: %w", c.id, err))
	}
	// Lowered limits are in force in the guest: vCPUs they no longer need can go.
	if err := s.trim(ctx); err != nil { // resize.go
		return fmt.Errorf("update container %s: limits updated, but %w", c.id, err)
	}
	return nil
}
