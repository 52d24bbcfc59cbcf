package shim

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/runtime"
	"github.com/containerd/containerd/v2/pkg/protobuf"
	ptypes "github.com/containerd/containerd/v2/pkg/protobuf/types"
	"github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/containerd/v2/pkg/shutdown"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/vessel-containers/vessel/internal/bundle"
	"github.com/vessel-containers/vessel/internal/config"
	"github.com/vessel-containers/vessel/internal/oci"
	"github.com/vessel-containers/vessel/internal/sandbox"
)

// service implements containerd's task API for the containers of one sandbox.
type service struct {
	// ctx is the shim's lifetime context: goroutines started for requests use it, not the
	// request's context, because they outlive the request.
	ctx       context.Context
	publisher shim.Publisher
	shutdown  shutdown.Service
	events    chan event

	// mu guards sb and containers.
	mu         sync.Mutex
	sb         *sandbox.Sandbox
	containers map[string]*container
}

type event struct {
	topic string
	ev    any
}

// NewTaskService creates the task service. It owns two goroutines: the event forwarder and,
// once a sandbox exists, the OOM watcher; both stop when the shim shuts down.
func NewTaskService(ctx context.Context, publisher shim.Publisher, sd shutdown.Service) (taskAPI.TaskService, error) {
	s := &service{
		ctx:        ctx,
		publisher:  publisher,
		shutdown:   sd,
		events:     make(chan event, 128),
		containers: map[string]*container{},
	}
	go s.forward(ctx)
	sd.RegisterCallback(s.cleanup)
	return s, nil
}

// RegisterTTRPC registers the task service on the shim's server.
func (s *service) RegisterTTRPC(server *ttrpc.Server) error {
	taskAPI.RegisterTaskService(server, s)
	return nil
}

// forward publishes events in order until the shim shuts down.
func (s *service) forward(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-s.events:
			if err := s.publisher.Publish(ctx, e.topic, e.ev); err != nil {
				log.G(ctx).WithError(err).WithField("topic", e.topic).Warn("publish event")
			}
		}
	}
}

func (s *service) send(topic string, ev any) {
	select {
	case s.events <- event{topic, ev}:
	case <-s.ctx.Done():
	}
}

// cleanup runs at shim shutdown: it tears the sandbox down if containerd did not.
func (s *service) cleanup(ctx context.Context) error {
	s.mu.Lock()
	sb := s.sb
	s.sb = nil
	ctrs := s.containers
	s.containers = map[string]*container{}
	s.mu.Unlock()
	var err error
	for _, c := range ctrs {
		c.closeIO()
	}
	if sb != nil {
		err = sb.Delete(ctx)
	}
	// After the VM stopped: until then the guest reads the root filesystems.
	for _, c := range ctrs {
		c.unmountRootfs(ctx)
	}
	return err
}

// toGRPC is the one place errors become gRPC status codes.
func toGRPC(err error) error {
	if err == nil {
		return nil
	}
	return errgrpc.ToGRPC(err)
}

func (s *service) get(id string) (*container, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.containers[id]
	if !ok {
		return nil, fmt.Errorf("container %s: %w", id, errdefs.ErrNotFound)
	}
	return c, nil
}

func (s *service) getProcess(id, execID string) (*container, *process, error) {
	c, err := s.get(id)
	if err != nil {
		return nil, nil, err
	}
	p, err := c.process(execID)
	if err != nil {
		return nil, nil, err
	}
	return c, p, nil
}

// Create creates a container: it boots the sandbox VM for a standalone container or a pod's
// sandbox container, or adds the container to the running sandbox.
func (s *service) Create(ctx context.Context, r *taskAPI.CreateTaskRequest) (_ *taskAPI.CreateTaskResponse, retErr error) {
	if r.Checkpoint != "" || r.ParentCheckpoint != "" {
		return nil, toGRPC(fmt.Errorf("restore from checkpoint: %w", errdefs.ErrNotImplemented))
	}
	spec, err := bundle.LoadSpec(r.Bundle)
	if err != nil {
		return nil, toGRPC(fmt.Errorf("%w: %w", errdefs.ErrInvalidArgument, err))
	}
	kind, sandboxID, err := oci.Identify(r.ID, spec.Annotations)
	if err != nil {
		return nil, toGRPC(fmt.Errorf("%w: %w", errdefs.ErrInvalidArgument, err))
	}
	cfg, err := loadConfig(r)
	if err != nil {
		return nil, toGRPC(err)
	}

	rootfs := bundle.RootfsPath(r.Bundle, spec)
	var mounted bool
	if len(r.Rootfs) > 0 {
		mounts := make([]mount.Mount, 0, len(r.Rootfs))
		for _, m := range r.Rootfs {
			mounts = append(mounts, mount.Mount{Type: m.Type, Source: m.Source, Target: m.Target, Options: m.Options})
		}
		rootfs = filepath.Join(r.Bundle, "rootfs")
		if err := os.MkdirAll(rootfs, 0o711); err != nil {
			return nil, toGRPC(fmt.Errorf("create rootfs dir: %w", err))
		}
		if err := mount.All(mounts, rootfs); err != nil {
			return nil, toGRPC(fmt.Errorf("mount rootfs of %s: %w", r.ID, err))
		}
		mounted = true
	}
	c := &container{id: r.ID, bundle: r.Bundle, rootfs: rootfs, rootfsMounted: mounted, execs: map[string]*process{}}
	defer func() {
		if retErr != nil {
			c.unmountRootfs(context.WithoutCancel(ctx))
		}
	}()

	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.containers[r.ID]; dup {
		return nil, toGRPC(fmt.Errorf("container %s: %w", r.ID, errdefs.ErrAlreadyExists))
	}
	if kind.CreatesSandbox() {
		if s.sb != nil {
			return nil, toGRPC(fmt.Errorf("shim already runs sandbox %s, cannot create sandbox %s: %w", s.sb.ID(), sandboxID, errdefs.ErrAlreadyExists))
		}
		sb, err := s.createSandbox(ctx, r.ID, r.Bundle, spec, cfg)
		if err != nil {
			return nil, toGRPC(err)
		}
		s.sb = sb
		go s.watchOOM(sb)
		defer func() {
			if retErr != nil {
				s.sb = nil
				if err := sb.Delete(context.WithoutCancel(ctx)); err != nil {
					log.G(ctx).WithError(err).Warn("remove sandbox after failed create")
				}
			}
		}()
	} else if s.sb == nil || s.sb.ID() != sandboxID {
		return nil, toGRPC(fmt.Errorf("sandbox %s of container %s does not run in this shim: %w", sandboxID, r.ID, errdefs.ErrFailedPrecondition))
	}

	init := newProcess(r.ID, "", stdio{stdin: r.Stdin, stdout: r.Stdout, stderr: r.Stderr, terminal: r.Terminal})
	ctr, err := s.sb.CreateContainer(ctx, sandbox.ContainerConfig{ID: r.ID, Spec: spec, Rootfs: rootfs, Stdin: r.Stdin != ""})
	if err != nil {
		return nil, toGRPC(err)
	}
	c.ctr = ctr
	c.init = init
	if err := init.openIO(ctx, ctr); err != nil {
		_ = s.sb.DeleteContainer(context.WithoutCancel(ctx), r.ID)
		return nil, toGRPC(err)
	}
	s.containers[r.ID] = c

	s.send(runtime.TaskCreateEventTopic, &eventstypes.TaskCreate{
		ContainerID: r.ID, Bundle: r.Bundle, Rootfs: r.Rootfs,
		IO:  &eventstypes.TaskIO{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal},
		Pid: uint32(os.Getpid()),
	})
	return &taskAPI.CreateTaskResponse{Pid: uint32(os.Getpid())}, nil
}

// createSandbox boots the VM for a sandbox.
// Preconditions: s.mu is held.
func (s *service) createSandbox(ctx context.Context, containerID, bundleDir string, spec *specs.Spec, cfg *config.Config) (*sandbox.Sandbox, error) {
	host, err := config.DetectHost()
	if err != nil {
		return nil, fmt.Errorf("inspect host: %w", err)
	}
	plan, err := oci.SandboxConfig(ctx, containerID, bundleDir, spec, cfg, oci.Options{Host: host})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errdefs.ErrInvalidArgument, err)
	}
	return sandbox.Create(ctx, sandbox.Config{
		ID:           plan.ID,
		Root:         sandboxRoot(),
		VM:           plan.VM,
		Hostname:     spec.Hostname,
		SandboxPidNS: plan.Container.Kind == oci.KindPodSandbox,
		VMSource:     vmSource(ctx, cfg, host), // factory.go
	})
}

// watchOOM turns the agent's OOM events into TaskOOM events until the sandbox is gone.
func (s *service) watchOOM(sb *sandbox.Sandbox) {
	for {
		id, err := sb.WaitOOM(s.ctx)
		if err != nil {
			log.G(s.ctx).WithError(err).Debug("oom watcher stops")
			return
		}
		log.G(s.ctx).WithField("container", id).Info("container OOM")
		s.sendOOM(id)
	}
}

// sendOOM publishes TaskOOM once per container: both the OOM watcher and the exit of an
// OOM-killed process report it, whichever sees it first.
func (s *service) sendOOM(id string) {
	s.mu.Lock()
	c, ok := s.containers[id]
	s.mu.Unlock()
	if ok && !c.oomSent.CompareAndSwap(false, true) {
		return
	}
	s.send(runtime.TaskOOMEventTopic, &eventstypes.TaskOOM{ContainerID: id})
}

// Start starts the container's init process or an exec'd process.
func (s *service) Start(ctx context.Context, r *taskAPI.StartRequest) (*taskAPI.StartResponse, error) {
	c, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, toGRPC(err)
	}
	if err := c.start(ctx, p); err != nil {
		return nil, toGRPC(err)
	}
	go s.waitExit(c, p)
	pid := uint32(os.Getpid())
	if r.ExecID == "" {
		s.send(runtime.TaskStartEventTopic, &eventstypes.TaskStart{ContainerID: r.ID, Pid: pid})
	} else {
		s.send(runtime.TaskExecStartedEventTopic, &eventstypes.TaskExecStarted{ContainerID: r.ID, ExecID: r.ExecID, Pid: pid})
	}
	return &taskAPI.StartResponse{Pid: pid}, nil
}

// waitExit waits for a started process, drains its output, records the exit and publishes
// TaskExit: the exit is reported only after every byte of output reached containerd.
func (s *service) waitExit(c *container, p *process) {
	exit, err := c.ctr.WaitExit(s.ctx, p.execID)
	code := exit.Status
	if exit.OOMKilled {
		s.sendOOM(c.id)
	}
	if err != nil {
		log.G(s.ctx).WithError(err).WithField("container", c.id).WithField("exec", p.execID).Warn("wait")
		code = 128 + int(syscall.SIGKILL)
		// The guest is gone: output cannot drain any more.
		p.closeIO()
	}
	p.waitIO()
	p.setExited(code)
	s.send(runtime.TaskExitEventTopic, &eventstypes.TaskExit{
		ContainerID: c.id, ID: p.id(), Pid: uint32(os.Getpid()), ExitStatus: uint32(code), ExitedAt: protobuf.ToTimestamp(p.exitedAt()),
	})
}

// Delete deletes an exec'd process, or the container (and, for the sandbox's own
// container, the VM).
func (s *service) Delete(ctx context.Context, r *taskAPI.DeleteRequest) (*taskAPI.DeleteResponse, error) {
	c, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, toGRPC(err)
	}
	if r.ExecID != "" {
		if p.status() == task.Status_RUNNING {
			return nil, toGRPC(fmt.Errorf("exec %s of %s is running: %w", r.ExecID, r.ID, errdefs.ErrFailedPrecondition))
		}
		c.removeExec(r.ExecID)
		p.closeIO()
		return &taskAPI.DeleteResponse{Pid: uint32(os.Getpid()), ExitStatus: uint32(p.exitCode()), ExitedAt: protobuf.ToTimestamp(p.exitedAt())}, nil
	}

	s.mu.Lock()
	err = s.removeContainer(ctx, c)
	s.mu.Unlock()
	if err != nil {
		log.G(ctx).WithError(err).Warn("delete")
	}
	if p.status() != task.Status_STOPPED {
		p.setExited(128 + int(syscall.SIGKILL))
	}
	s.send(runtime.TaskDeleteEventTopic, &eventstypes.TaskDelete{
		ContainerID: r.ID, Pid: uint32(os.Getpid()), ExitStatus: uint32(p.exitCode()), ExitedAt: protobuf.ToTimestamp(p.exitedAt()),
	})
	return &taskAPI.DeleteResponse{Pid: uint32(os.Getpid()), ExitStatus: uint32(p.exitCode()), ExitedAt: protobuf.ToTimestamp(p.exitedAt())}, nil
}

// removeContainer removes the container from the sandbox and the host. The sandbox's own
// container, or the last container, ends the VM: then the guest is asked to remove the
// container only while one of its processes still runs, so that the guest, not the VM's
// end, stops it. Once every exit status is collected, stopping the VM is all the guest
// needs (two guest round trips fewer). Every step runs whatever failed before it.
// Preconditions: s.mu is held.
func (s *service) removeContainer(ctx context.Context, c *container) error {
	sb := s.sb
	delete(s.containers, c.id)
	var errs []error
	ends := sb != nil && (len(s.containers) == 0 || c.id == sb.ID())
	if sb != nil && (!ends || c.running()) {
		if err := sb.DeleteContainer(ctx, c.id); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	c.closeIO()
	if ends {
		s.sb = nil
		if err := sb.Delete(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	// After the VM stopped, when it ends: until then the guest reads the rootfs.
	c.unmountRootfs(ctx)
	return errors.Join(errs...)
}

// Exec registers an additional process; Start runs it.
func (s *service) Exec(ctx context.Context, r *taskAPI.ExecProcessRequest) (*ptypes.Empty, error) {
	c, err := s.get(r.ID)
	if err != nil {
		return nil, toGRPC(err)
	}
	if r.Spec == nil {
		return nil, toGRPC(fmt.Errorf("exec %s: no process spec: %w", r.ExecID, errdefs.ErrInvalidArgument))
	}
	v, err := typeurl.UnmarshalAny(r.Spec)
	if err != nil {
		return nil, toGRPC(fmt.Errorf("exec %s: decode process spec: %w: %w", r.ExecID, errdefs.ErrInvalidArgument, err))
	}
	spec, ok := v.(*specs.Process)
	if !ok {
		return nil, toGRPC(fmt.Errorf("exec %s: spec is %T, want a process: %w", r.ExecID, v, errdefs.ErrInvalidArgument))
	}
	p := newProcess(r.ID, r.ExecID, stdio{stdin: r.Stdin, stdout: r.Stdout, stderr: r.Stderr, terminal: r.Terminal})
	p.spec = spec
	if err := c.addExec(p); err != nil {
		return nil, toGRPC(err)
	}
	s.send(runtime.TaskExecAddedEventTopic, &eventstypes.TaskExecAdded{ContainerID: r.ID, ExecID: r.ExecID})
	return &ptypes.Empty{}, nil
}

// ResizePty resizes a process's terminal.
func (s *service) ResizePty(ctx context.Context, r *taskAPI.ResizePtyRequest) (*ptypes.Empty, error) {
	c, _, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, toGRPC(err)
	}
	if err := c.ctr.ResizeTTY(ctx, r.ExecID, r.Height, r.Width); err != nil {
		return nil, toGRPC(err)
	}
	return &ptypes.Empty{}, nil
}

// State reports a process's state.
func (s *service) State(ctx context.Context, r *taskAPI.StateRequest) (*taskAPI.StateResponse, error) {
	c, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, toGRPC(err)
	}
	st := p.status()
	if r.ExecID == "" && st == task.Status_RUNNING && c.ctr.State() == sandbox.StatePaused {
		st = task.Status_PAUSED
	}
	return &taskAPI.StateResponse{
		ID: r.ID, ExecID: r.ExecID, Bundle: c.bundle, Pid: uint32(os.Getpid()), Status: st,
		Stdin: p.stdio.stdin, Stdout: p.stdio.stdout, Stderr: p.stdio.stderr, Terminal: p.stdio.terminal,
		ExitStatus: uint32(p.exitCode()), ExitedAt: protobuf.ToTimestamp(p.exitedAt()),
	}, nil
}

// Pids lists the container's processes (guest pids).
func (s *service) Pids(ctx context.Context, r *taskAPI.PidsRequest) (*taskAPI.PidsResponse, error) {
	c, err := s.get(r.ID)
	if err != nil {
		return nil, toGRPC(err)
	}
	procs, err := c.ctr.Processes(ctx)
	if err != nil {
		return nil, toGRPC(err)
	}
	resp := &taskAPI.PidsResponse{}
	for _, p := range procs {
		info := &task.ProcessInfo{Pid: p.Pid}
		if p.ExecId != "" {
			// As containerd's runc shim does: which exec a pid belongs to.
			details, err := typeurl.MarshalAnyToProto(&options.ProcessDetails{ExecID: p.ExecId})
			if err != nil {
				return nil, toGRPC(fmt.Errorf("encode process details: %w", err))
			}
			info.Info = details
		}
		resp.Processes = append(resp.Processes, info)
	}
	return resp, nil
}

// Pause freezes the container.
func (s *service) Pause(ctx context.Context, r *taskAPI.PauseRequest) (*ptypes.Empty, error) {
	c, err := s.get(r.ID)
	if err != nil {
		return nil, toGRPC(err)
	}
	if err := c.ctr.Pause(ctx); err != nil {
		return nil, toGRPC(err)
	}
	s.send(runtime.TaskPausedEventTopic, &eventstypes.TaskPaused{ContainerID: r.ID})
	return &ptypes.Empty{}, nil
}

// Resume thaws the container.
func (s *service) Resume(ctx context.Context, r *taskAPI.ResumeRequest) (*ptypes.Empty, error) {
	c, err := s.get(r.ID)
	if err != nil {
		return nil, toGRPC(err)
	}
	if err := c.ctr.Resume(ctx); err != nil {
		return nil, toGRPC(err)
	}
	s.send(runtime.TaskResumedEventTopic, &eventstypes.TaskResumed{ContainerID: r.ID})
	return &ptypes.Empty{}, nil
}

// Checkpoint is not supported until VM snapshots exist.
func (s *service) Checkpoint(ctx context.Context, r *taskAPI.CheckpointTaskRequest) (*ptypes.Empty, error) {
	return nil, toGRPC(fmt.Errorf("checkpoint of %s: vessel cannot checkpoint containers until VM snapshots exist: %w", r.ID, errdefs.ErrNotImplemented))
}

// Kill signals one process or, with All, every process of the container.
func (s *service) Kill(ctx context.Context, r *taskAPI.KillRequest) (*ptypes.Empty, error) {
	c, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, toGRPC(err)
	}
	switch p.status() {
	case task.Status_STOPPED:
		return nil, toGRPC(fmt.Errorf("process %q of %s already finished: %w", r.ExecID, r.ID, errdefs.ErrNotFound))
	case task.Status_CREATED:
		if r.ExecID != "" {
			return nil, toGRPC(fmt.Errorf("exec %s of %s is not started: %w", r.ExecID, r.ID, errdefs.ErrFailedPrecondition))
		}
	}
	if err := c.ctr.Kill(ctx, r.ExecID, syscall.Signal(r.Signal), r.All); err != nil {
		return nil, toGRPC(err)
	}
	return &ptypes.Empty{}, nil
}

// CloseIO closes a process's stdin.
func (s *service) CloseIO(ctx context.Context, r *taskAPI.CloseIORequest) (*ptypes.Empty, error) {
	_, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, toGRPC(err)
	}
	if r.Stdin {
		p.closeStdin()
	}
	return &ptypes.Empty{}, nil
}

// Update changes the container's resources.
func (s *service) Update(ctx context.Context, r *taskAPI.UpdateTaskRequest) (*ptypes.Empty, error) {
	c, err := s.get(r.ID)
	if err != nil {
		return nil, toGRPC(err)
	}
	v, err := typeurl.UnmarshalAny(r.Resources)
	if err != nil {
		return nil, toGRPC(fmt.Errorf("update %s: decode resources: %w: %w", r.ID, errdefs.ErrInvalidArgument, err))
	}
	res, ok := v.(*specs.LinuxResources)
	if !ok {
		return nil, toGRPC(fmt.Errorf("update %s: resources are %T, want linux resources: %w", r.ID, v, errdefs.ErrInvalidArgument))
	}
	if err := c.ctr.Update(ctx, res); err != nil {
		return nil, toGRPC(err)
	}
	return &ptypes.Empty{}, nil
}

// Wait blocks until the process exits.
func (s *service) Wait(ctx context.Context, r *taskAPI.WaitRequest) (*taskAPI.WaitResponse, error) {
	_, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, toGRPC(err)
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		return nil, toGRPC(ctx.Err())
	}
	return &taskAPI.WaitResponse{ExitStatus: uint32(p.exitCode()), ExitedAt: protobuf.ToTimestamp(p.exitedAt())}, nil
}

// Stats returns the container's cgroup metrics from the guest.
func (s *service) Stats(ctx context.Context, r *taskAPI.StatsRequest) (*taskAPI.StatsResponse, error) {
	c, err := s.get(r.ID)
	if err != nil {
		return nil, toGRPC(err)
	}
	st, err := c.ctr.Stats(ctx)
	if err != nil {
		return nil, toGRPC(err)
	}
	anyStats, err := typeurl.MarshalAnyToProto(metricsV2(st))
	if err != nil {
		return nil, toGRPC(fmt.Errorf("encode stats: %w", err))
	}
	return &taskAPI.StatsResponse{Stats: anyStats}, nil
}

// Connect returns the shim's pid; the container's processes live in the VM.
func (s *service) Connect(ctx context.Context, r *taskAPI.ConnectRequest) (*taskAPI.ConnectResponse, error) {
	pid := uint32(os.Getpid())
	return &taskAPI.ConnectResponse{ShimPid: pid, TaskPid: pid}, nil
}

// Shutdown ends the shim once it holds no containers.
func (s *service) Shutdown(ctx context.Context, r *taskAPI.ShutdownRequest) (*ptypes.Empty, error) {
	s.mu.Lock()
	n := len(s.containers)
	s.mu.Unlock()
	if n > 0 {
		return &ptypes.Empty{}, nil
	}
	s.shutdown.Shutdown()
	return &ptypes.Empty{}, nil
}

// loadConfig reads Vessel's configuration: the runtime options' ConfigPath when containerd
// passes one, else the usual search order.
func loadConfig(r *taskAPI.CreateTaskRequest) (*config.Config, error) {
	path, err := configPathFromOptions(r)
	if err != nil {
		return nil, err
	}
	cfg, err := config.Load(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errdefs.ErrInvalidArgument, err)
	}
	return cfg, nil
}
