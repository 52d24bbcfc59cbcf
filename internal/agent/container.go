//go:build linux

package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
	"github.com/vessel-containers/vessel/internal/agent/libct"
	"github.com/vessel-containers/vessel/internal/tracing"
)

// containerState is a container's lifecycle state. Transitions: created → running (Start),
// running ⇄ paused, any → stopped when the init process exits.
type containerState int

const (
	stateCreated containerState = iota
	stateRunning
	statePaused
	stateStopped
)

func (s containerState) String() string {
	return [...]string{"created", "running", "paused", "stopped"}[s]
}

// container is a container the agent created.
type container struct {
	id string
	// initExecID is the exec id the host gave the init (CreateContainerRequest.exec_id);
	// requests name the init by it or by an empty exec id.
	initExecID string
	spec       *specs.Spec
	lc         *libct.Container
	storages   []string // mount points of the container's own storages
	// cgroupPath is the spec's linux.cgroupsPath (claimed in Service.cgroups), empty when
	// the agent named the cgroup.
	cgroupPath string
	cgroupDir  string
	// oomBase is the cgroup's OOM kill count when the container was created.
	oomBase uint64

	// mu guards state, init, execs, removing and unpaused.
	mu       sync.Mutex
	state    containerState
	init     *process
	execs    map[string]*process
	removing bool
	// unpaused, made while the container is paused (PauseContainer, or waitUnpaused after
	// a removal that failed), is closed when the container is resumed or its removal
	// begins; nil otherwise.
	unpaused chan struct{}
}

// status is the container's state, stopped once its init has exited.
//
// Preconditions: c.mu is held.
func (c *container) status() containerState {
	if c.init != nil && c.init.hasExited() {
		return stateStopped
	}
	return c.state
}

// waitUnpaused waits while the container is paused (an exec with ignore_paused: runc's
// exec --ignore-paused starts its process in the frozen cgroup, where it waits for the
// resume; libcontainer cannot start a process into a frozen cgroup without stalling the
// agent, see libct.Container.Start, so the exec waits for the resume and then starts). It
// returns at once for a container that is not paused, and when the container's removal
// begins or its init exits, leaving the caller to look at the state.
//
// Preconditions: c.mu is held; it is released while waiting.
func (c *container) waitUnpaused(ctx context.Context) error {
	for c.status() == statePaused && !c.removing {
		if c.unpaused == nil {
			c.unpaused = make(chan struct{})
		}
		ch := c.unpaused
		var initExited <-chan struct{} // nil, never ready, without an init
		if c.init != nil {
			initExited = c.init.exited
		}
		c.mu.Unlock()
		log.G(ctx).WithField("container", c.id).Info("exec waits for the container to be resumed")
		select {
		case <-ch:
			c.mu.Lock()
		case <-initExited:
			c.mu.Lock()
		case <-ctx.Done():
			c.mu.Lock()
			return fmt.Errorf("exec in paused container %q: %w", c.id, ctx.Err())
		}
	}
	return nil
}

// wakeUnpaused closes unpaused, once.
//
// Preconditions: c.mu is held.
func (c *container) wakeUnpaused() {
	if c.unpaused != nil {
		close(c.unpaused)
		c.unpaused = nil
	}
}

// oomKills reads the container's OOM kill count.
func (c *container) oomKills() uint64 {
	ev, err := readFlatKeyed(path.Join(c.cgroupDir, "memory.events"))
	if err != nil {
		return 0
	}
	return ev["oom_kill"]
}

// lookup returns a known container.
func (s *Service) lookup(id string) (*container, error) {
	if id == "" {
		return nil, fmt.Errorf("container %q: %w (container_id is empty)", id, errdefs.ErrNotFound)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.containers[id]
	if !ok {
		return nil, fmt.Errorf("container %q: %w", id, errdefs.ErrNotFound)
	}
	return c, nil
}

// CreateContainer mounts the container's storages, creates it with libcontainer and starts
// its init up to the exec barrier.
func (s *Service) CreateContainer(ctx context.Context, req *agentv1.CreateContainerRequest) (_ *agentv1.Empty, retErr error) {
	start := time.Now()
	id := req.GetContainerId()
	if err := validID("container_id", id); err != nil {
		return nil, err
	}
	if len(req.GetOciSpec()) == 0 {
		return nil, fmt.Errorf("%w: oci_spec is empty", errdefs.ErrInvalidArgument)
	}
	var spec specs.Spec
	if err := json.Unmarshal(req.GetOciSpec(), &spec); err != nil {
		return nil, fmt.Errorf("%w: oci_spec is not valid OCI runtime spec JSON: %w", errdefs.ErrInvalidArgument, err)
	}
	if spec.Process == nil {
		return nil, fmt.Errorf("%w: oci_spec: process is missing", errdefs.ErrInvalidArgument)
	}
	if err := checkGuestSpec(&spec); err != nil {
		return nil, err
	}
	if err := s.sandboxReady(); err != nil {
		return nil, err
	}
	if err := s.reserve(id); err != nil {
		return nil, err
	}
	defer s.release(id)

	ctx = log.WithLogger(ctx, log.G(ctx).WithField("container", id))
	var undo []func()
	defer func() {
		if retErr != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()

	c := &container{id: id, initExecID: req.GetExecId(), spec: &spec, execs: make(map[string]*process)}
	// Registered first: a storage that fails to mount leaves those mounted before it to
	// be unmounted.
	undo = append(undo, func() { s.unmountAll(ctx, c.storages) })
	for i, st := range req.GetStorages() {
		mp, err := s.storage.Mount(ctx, st)
		if err != nil {
			return nil, fmt.Errorf("container %q storage %d: %w", id, i, err)
		}
		c.storages = append(c.storages, mp)
	}

	if spec.Root != nil && filepath.IsAbs(spec.Root.Path) {
		if _, err := os.Stat(spec.Root.Path); err != nil {
			return nil, fmt.Errorf("%w: oci_spec: root.path %q is not in the guest (is the shared directory mounted?): %w", errdefs.ErrInvalidArgument, spec.Root.Path, err)
		}
	}
	if err := readonlySpecialFiles(&spec); err != nil { // readonly.go
		return nil, fmt.Errorf("container %q: %w", id, err)
	}
	if err := checkSpecPaths(s.cfg.RunDir, &spec); err != nil {
		return nil, err
	}
	if err := applyDevices(ctx, &spec, req.GetDevices(), s.findBlock); err != nil {
		return nil, fmt.Errorf("container %q: %w", id, err)
	}
	if err := checkDeviceNodes(&spec, req.GetDevices(), sysDev); err != nil {
		return nil, fmt.Errorf("container %q: %w", id, err)
	}
	hooks, err := guestHooks(s.hookPath()) // hooks.go
	if err != nil {
		return nil, fmt.Errorf("container %q: %w", id, err)
	}
	if hooks != nil {
		if spec.Hooks != nil {
			hooks.StartContainer = spec.Hooks.StartContainer // the spec's own, run in the container
		}
		spec.Hooks = hooks
		log.G(ctx).WithField("hooks", hookCount(hooks)).Debug("guest hooks")
	}
	nsPaths, holder, err := s.sandboxNamespaces(&spec, req.GetSandboxNamespaces(), req.GetSandboxPidns())
	if err != nil {
		return nil, err
	}
	podNS, err := s.podNetNS() // network.go
	if err != nil {
		return nil, fmt.Errorf("container %q: %w", id, err)
	}
	cgPath := path.Join(s.cfg.CgroupParent, id)
	if spec.Linux != nil && spec.Linux.CgroupsPath != "" {
		cgPath = spec.Linux.CgroupsPath
		if err := s.cgroups.claim(id, cgPath); err != nil { // cgroup.go
			return nil, fmt.Errorf("container %q: %w", id, err)
		}
		c.cgroupPath = cgPath
		// Runs after the container's destroy, which removes its cgroup.
		undo = append(undo, func() { s.cgroups.release(ctx, id, cgPath) })
	}
	_, span := tracing.Start(ctx, "libcontainer create")
	lc, err := libct.Create(libct.Options{
		ID:         id,
		Spec:       &spec,
		StateRoot:  path.Join(s.cfg.RunDir, "libct"),
		CgroupPath: cgPath,
		NSPaths:    nsPaths,
		NetNSPath:  podNS.Path(),
		Reaper:     s.cfg.Reaper,
	})
	tracing.End(span, err)
	if err != nil {
		return nil, err
	}
	c.lc = lc
	undo = append(undo, func() {
		_ = lc.SignalAll(unix.SIGKILL)
		if err := lc.Destroy(); err != nil {
			log.G(ctx).WithError(err).Warn("rollback: destroy container")
		}
	})
	c.cgroupDir = lc.CgroupDir()
	c.oomBase = c.oomKills()

	pio, stdio, err := newProcessIO(req.GetStdio(), spec.Process.Terminal)
	if err != nil {
		return nil, err
	}
	proc, err := libct.NewProcess(spec.Process, true, spec.Mounts, stdio)
	if err != nil {
		pio.abort()
		return nil, fmt.Errorf("container %q: oci_spec.process: %w", id, err)
	}
	_, span = tracing.Start(ctx, "libcontainer start init")
	entries, err := lc.Start(proc, libct.StartOptions{Record: req.GetInitLog()})
	tracing.End(span, err)
	if req.GetInitLog() {
		s.initLogs.put(id, "", entries) // initlog.go
	}
	if err != nil {
		pio.abort()
		return nil, err
	}
	p := newProcess(id, "", proc, pio)
	// From here the init runs: rolling back kills it, and its watcher reaps it.
	p.watch(ctx, c.oomBase, c.oomKills, nil)
	undo = append(undo, func() {
		_ = lc.SignalAll(unix.SIGKILL)
		<-p.exited
		pio.shutdown()
	})
	if err := pio.afterStart(ctx); err != nil {
		return nil, fmt.Errorf("container %q: %w", id, err)
	}
	c.init = p
	c.state = stateCreated

	s.mu.Lock()
	s.containers[id] = c
	if holder && s.pidnsHolder == "" {
		s.pidnsHolder = id
	}
	s.mu.Unlock()
	log.G(ctx).WithField("took", time.Since(start).Round(time.Millisecond)).Infof("container created, init pid %d", p.pid)
	return &agentv1.Empty{}, nil
}

// reserve claims an id for a CreateContainer in progress.
func (s *Service) reserve(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.containers[id]; ok || s.reserved[id] {
		return fmt.Errorf("container %q: %w", id, errdefs.ErrAlreadyExists)
	}
	s.reserved[id] = true
	return nil
}

func (s *Service) release(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.reserved, id)
}

// sandboxNamespaces decides which namespaces the container joins from the sandbox's first
// container (the pod's sandbox container, whose ipc, uts and pid namespaces are the pod's):
// the types in join (CreateContainerRequest.sandbox_namespaces, "ipc", "uts", "pid") and pid
// when sandboxPidns is set. The container's spec must ask for a namespace of each such type
// (without a path: the host strips them). It returns the namespace paths by type and
// whether this container becomes that first container (the first one with its own pid
// namespace).
func (s *Service) sandboxNamespaces(spec *specs.Spec, join []string, sandboxPidns bool) (paths map[specs.LinuxNamespaceType]string, holder bool, err error) {
	var own []specs.LinuxNamespaceType
	if spec.Linux != nil {
		for _, ns := range spec.Linux.Namespaces {
			own = append(own, ns.Type)
		}
	}
	var types []specs.LinuxNamespaceType
	for _, j := range join {
		t := specs.LinuxNamespaceType(j)
		if t != specs.IPCNamespace && t != specs.UTSNamespace && t != specs.PIDNamespace {
			return nil, false, fmt.Errorf("%w: sandbox_namespaces: %q is not a namespace a container can join from the sandbox (ipc, uts, pid)", errdefs.ErrInvalidArgument, j)
		}
		if !slices.Contains(types, t) {
			types = append(types, t)
		}
	}
	if sandboxPidns && !slices.Contains(types, specs.PIDNamespace) {
		types = append(types, specs.PIDNamespace)
	}
	for _, t := range types {
		if !slices.Contains(own, t) {
			return nil, false, fmt.Errorf("%w: the container joins the sandbox's %s namespace but oci_spec.linux.namespaces has no %s namespace", errdefs.ErrInvalidArgument, t, t)
		}
	}
	s.mu.Lock()
	holderID := s.pidnsHolder
	h := s.containers[holderID]
	s.mu.Unlock()
	if holderID == "" {
		if len(types) > 0 {
			return nil, false, fmt.Errorf("%w: the container joins the sandbox's %s namespace, but the sandbox has no container yet", errdefs.ErrFailedPrecondition, types[0])
		}
		return nil, slices.Contains(own, specs.PIDNamespace), nil
	}
	if len(types) == 0 {
		return nil, false, nil
	}
	if h == nil {
		return nil, false, fmt.Errorf("%w: the sandbox namespaces are gone: its first container %q was removed", errdefs.ErrFailedPrecondition, holderID)
	}
	h.mu.Lock()
	init := h.init
	h.mu.Unlock()
	if init == nil || init.hasExited() {
		return nil, false, fmt.Errorf("%w: the sandbox namespaces are gone: the init of its first container %q exited", errdefs.ErrFailedPrecondition, holderID)
	}
	paths = make(map[specs.LinuxNamespaceType]string, len(types))
	for _, t := range types {
		paths[t] = libct.NSPath(init.pid, t)
	}
	return paths, false, nil
}

// StartContainer releases the init from the exec barrier.
func (s *Service) StartContainer(ctx context.Context, req *agentv1.StartContainerRequest) (*agentv1.Empty, error) {
	c, err := s.lookup(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := c.status(); st != stateCreated || c.removing {
		return nil, fmt.Errorf("container %q: %w: it is %s, not created", c.id, errdefs.ErrFailedPrecondition, st)
	}
	_, span := tracing.Start(ctx, "libcontainer exec")
	err = c.lc.Exec()
	tracing.End(span, err)
	if err != nil {
		return nil, err
	}
	c.state = stateRunning
	log.G(ctx).WithField("container", c.id).Info("container started")
	return &agentv1.Empty{}, nil
}

// RemoveContainer stops the container if it runs (SIGTERM, then SIGKILL after timeout
// seconds), destroys it, unmounts its storages and forgets it.
func (s *Service) RemoveContainer(ctx context.Context, req *agentv1.RemoveContainerRequest) (*agentv1.Empty, error) {
	c, err := s.lookup(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.removing {
		c.mu.Unlock()
		return nil, fmt.Errorf("container %q: %w: removal already in progress", c.id, errdefs.ErrFailedPrecondition)
	}
	c.removing = true
	init := c.init
	paused := c.status() == statePaused
	c.wakeUnpaused() // an exec waiting for the resume gives up
	c.mu.Unlock()

	ctx = log.WithLogger(ctx, log.G(ctx).WithField("container", c.id))
	if !init.hasExited() {
		if t := req.GetTimeout(); t > 0 && !paused {
			_ = c.lc.Signal(unix.SIGTERM)
			select {
			case <-init.exited:
			case <-time.After(time.Duration(t) * time.Second):
				log.G(ctx).Infof("container did not stop in %ds, killing it", t)
			case <-ctx.Done():
			}
		}
	}
	// Kill whatever is left, also exec processes and anything they forked.
	if err := c.lc.SignalAll(unix.SIGKILL); err != nil {
		log.G(ctx).WithError(err).Warn("kill container processes")
	}
	select {
	case <-init.exited:
	case <-time.After(10 * time.Second):
		c.mu.Lock()
		c.removing = false
		c.mu.Unlock()
		return nil, fmt.Errorf("container %q: init (pid %d) did not exit 10s after SIGKILL", c.id, init.pid)
	}
	c.mu.Lock()
	procs := []*process{init}
	for _, p := range c.execs {
		procs = append(procs, p)
	}
	c.mu.Unlock()
	for _, p := range procs {
		select {
		case <-p.exited:
		case <-time.After(5 * time.Second):
			log.G(ctx).Warnf("%s did not exit after SIGKILL", p.name())
		}
		p.io.shutdown()
	}
	_, span := tracing.Start(ctx, "libcontainer destroy")
	err = c.lc.Destroy()
	tracing.End(span, err)
	if err != nil {
		c.mu.Lock()
		c.removing = false
		c.mu.Unlock()
		return nil, err
	}
	if c.cgroupPath != "" {
		s.cgroups.release(ctx, c.id, c.cgroupPath)
	}
	s.unmountAll(ctx, c.storages)
	s.mu.Lock()
	delete(s.containers, c.id)
	delete(s.oomSeen, c.id)
	s.mu.Unlock()
	log.G(ctx).Info("container removed")
	return &agentv1.Empty{}, nil
}

// PauseContainer freezes the container.
func (s *Service) PauseContainer(ctx context.Context, req *agentv1.PauseContainerRequest) (*agentv1.Empty, error) {
	c, err := s.lookup(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := c.status(); st != stateRunning && st != stateCreated {
		return nil, fmt.Errorf("container %q: %w: it is %s", c.id, errdefs.ErrFailedPrecondition, st)
	}
	if err := c.lc.Pause(); err != nil {
		return nil, err
	}
	c.state = statePaused
	c.unpaused = make(chan struct{})
	return &agentv1.Empty{}, nil
}

// ResumeContainer thaws the container.
func (s *Service) ResumeContainer(ctx context.Context, req *agentv1.ResumeContainerRequest) (*agentv1.Empty, error) {
	c, err := s.lookup(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := c.status(); st != statePaused {
		return nil, fmt.Errorf("container %q: %w: it is %s, not paused", c.id, errdefs.ErrFailedPrecondition, st)
	}
	if err := c.lc.Resume(); err != nil {
		return nil, err
	}
	c.wakeUnpaused()
	c.state = stateRunning
	if c.lc.Status() == "created" {
		c.state = stateCreated
	}
	return &agentv1.Empty{}, nil
}

// UpdateContainer applies new cgroup limits.
func (s *Service) UpdateContainer(ctx context.Context, req *agentv1.UpdateContainerRequest) (*agentv1.Empty, error) {
	c, err := s.lookup(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	raw := req.GetResources().GetOciResources()
	if len(raw) == 0 {
		return nil, fmt.Errorf("%w: resources.oci_resources is empty", errdefs.ErrInvalidArgument)
	}
	var r specs.LinuxResources
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, fmt.Errorf("%w: resources.oci_resources is not OCI LinuxResources JSON: %w", errdefs.ErrInvalidArgument, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := c.status(); st == stateStopped {
		return nil, fmt.Errorf("container %q: %w: it is stopped", c.id, errdefs.ErrFailedPrecondition)
	}
	if err := c.lc.Update(&r); err != nil {
		return nil, err
	}
	return &agentv1.Empty{}, nil
}
