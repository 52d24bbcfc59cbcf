package shim

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/api/types/task"
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
	"github.com/vessel-containers/vessel/internal/directvolume"
	"github.com/vessel-containers/vessel/internal/hooks"
	"github.com/vessel-containers/vessel/internal/hostcgroup"
	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/oci"
	"github.com/vessel-containers/vessel/internal/rootless"
	"github.com/vessel-containers/vessel/internal/sandbox"
	"github.com/vessel-containers/vessel/internal/shimproto"
	"github.com/vessel-containers/vessel/internal/tracing"
	"github.com/vessel-containers/vessel/internal/tracing/otlp"
)

// service implements containerd's task API for the containers of one sandbox.
//
// s.mu is never held across slow work (booting or stopping the VM, guest requests): Create
// reserves the container id (and, for the container that creates the sandbox, the sandbox
// slot) under the lock, does the slow work without it, and commits under it again. While a
// task is being created it is in s.containers with creating set: State reports it CREATED,
// Pids reports no processes, Wait waits, Kill and Delete cancel its creation, and the other
// calls fail with FailedPrecondition. (containerd's runc shim makes a task visible only
// once Create returns; containerd does not call a task before its Create returned, so the
// in-between state is only seen by concurrent callers, and cancelling is what they need.)
type service struct {
	// ctx is the shim's lifetime context: goroutines started for requests use it, not the
	// request's context, because they outlive the request.
	ctx       context.Context
	publisher shim.Publisher
	shutdown  shutdown.Service
	events    chan event
	// root holds the sandbox state directories.
	root string
	// volRoot holds the records of direct-assigned volumes (internal/directvolume).
	volRoot string
	// callerRunsHooks is set when the program running the shim runs the OCI hooks (the
	// CLI); otherwise the shim runs them (hooks.go).
	callerRunsHooks bool
	// volMu guards volumes, the direct-assigned volume paths the sandbox holds, whose
	// records name the sandbox until it ends (volume.go).
	volMu   sync.Mutex
	volumes map[string]bool

	// mu guards sb, booting, containers and metricsSrv, and the creating and cancelCreate
	// fields of every container in containers.
	mu sync.Mutex
	sb *sandbox.Sandbox
	// booting is the id of the sandbox a Create is booting, "" when none: the sandbox slot
	// is taken while sb is still nil.
	booting    string
	containers map[string]*container
	// metricsSrv serves metrics on the sandbox's metrics socket while sb is set (metrics.go).
	metricsSrv *metricsServer

	// metrics are the shim's and the guest's figures for vessel-monitor (metrics.go).
	metrics *shimMetrics

	// traceMu guards exporter.
	traceMu sync.Mutex
	// exporter sends spans to runtime.otlp_endpoint; nil while tracing is off (tracing.go).
	exporter *otlp.Exporter
}

// errCreateCancelled is the cause of a Create cancelled by Kill or Delete of its task.
var errCreateCancelled = fmt.Errorf("cancelled by Kill or Delete of the task while it was being created: %w", context.Canceled)

// errShimShutdown is the cause of a Create cancelled because the shim shuts down.
var errShimShutdown = fmt.Errorf("cancelled because the shim shuts down: %w", context.Canceled)

type event struct {
	topic string
	ev    any
}

// NewTaskService creates the task service. It owns two goroutines: the event forwarder and,
// once a sandbox exists, the OOM watcher; both stop when the shim shuts down.
func NewTaskService(ctx context.Context, publisher shim.Publisher, sd shutdown.Service) (taskAPI.TaskService, error) {
	s := newService(ctx, publisher, sd, sandboxRoot())
	s.volRoot = directVolumeRoot()
	s.callerRunsHooks = shimproto.Lookup(flag.CommandLine).CallerRunsHooks
	return s, nil
}

// newService is NewTaskService with the sandbox root given.
func newService(ctx context.Context, publisher shim.Publisher, sd shutdown.Service, root string) *service {
	s := &service{
		ctx:        ctx,
		publisher:  publisher,
		shutdown:   sd,
		events:     make(chan event, 128),
		root:       root,
		volRoot:    directvolume.DefaultRoot,
		containers: map[string]*container{},
	}
	s.metrics = newShimMetrics(s)
	go s.forward(ctx)
	sd.RegisterCallback(s.cleanup)
	return s
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

// cleanup runs at shim shutdown: it cancels creations still running, waits until they
// have cleaned up, and tears the sandbox down if containerd did not.
func (s *service) cleanup(ctx context.Context) error {
	s.mu.Lock()
	var pending []chan struct{}
	for _, c := range s.containers {
		if c.creating {
			c.cancelCreate(errShimShutdown)
			pending = append(pending, c.created)
		}
	}
	s.mu.Unlock()
	for _, done := range pending {
		<-done
	}

	s.mu.Lock()
	sb := s.sb
	s.sb = nil
	ms := s.metricsSrv
	s.metricsSrv = nil
	ctrs := s.containers
	s.containers = map[string]*container{}
	s.mu.Unlock()
	var err error
	for _, c := range ctrs {
		c.closeIO()
		c.stopStandIns()
	}
	ms.stop()
	if sb != nil {
		err = sb.Delete(ctx)
		s.forgetDirectVolumes(ctx, sb.ID()) // volume.go
	}
	// After the VM stopped: until then the guest reads the root filesystems.
	for _, c := range ctrs {
		c.unmountRootfs(ctx)
		c.unmountVolumes(ctx) // volume_idmap.go
	}
	s.shutdownTracing(ctx) // tracing.go
	return err
}

// toGRPC is the one place errors become gRPC status codes.
func toGRPC(err error) error {
	if err == nil {
		return nil
	}
	return errgrpc.ToGRPC(err)
}

// get returns a container whose Create completed.
func (s *service) get(id string) (*container, error) {
	c, creating, err := s.lookup(id)
	if err != nil {
		return nil, err
	}
	if creating {
		return nil, fmt.Errorf("container %s is being created: %w", id, errdefs.ErrFailedPrecondition)
	}
	return c, nil
}

// lookup returns a container, also one whose Create still runs (creating; its ctr is nil
// until Create commits, and only its init process exists).
func (s *service) lookup(id string) (_ *container, creating bool, _ error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.containers[id]
	if !ok {
		return nil, false, fmt.Errorf("container %s: %w", id, errdefs.ErrNotFound)
	}
	return c, c.creating, nil
}

// lookupProcess is getProcess that also finds the init process of a task whose Create still
// runs (State and Wait answer for it); such a task has no exec processes yet.
func (s *service) lookupProcess(id, execID string) (*container, *process, error) {
	c, creating, err := s.lookup(id)
	if err != nil {
		return nil, nil, err
	}
	if creating && execID != "" {
		return nil, nil, fmt.Errorf("exec %s in container %s: %w", execID, id, errdefs.ErrNotFound)
	}
	p, err := c.process(execID)
	if err != nil {
		return nil, nil, err
	}
	return c, p, nil
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
// sandbox container, or adds the container to the running sandbox. The spec becomes one
// validated plan (oci.SandboxConfig or oci.ContainerConfig) that the sandbox consumes.
//
// The id (and the sandbox slot) is reserved under s.mu; the rootfs mount, the VM boot and
// the guest's container creation run without it, under a context that Kill and Delete of
// the task cancel; the result is committed under s.mu. A Create that fails or is cancelled
// leaves nothing behind: the VM it booted is stopped, the sandbox directory removed, the
// rootfs unmounted and the id released.
func (s *service) Create(ctx context.Context, r *taskAPI.CreateTaskRequest) (_ *taskAPI.CreateTaskResponse, retErr error) {
	if r.Checkpoint != "" || r.ParentCheckpoint != "" {
		return nil, toGRPC(fmt.Errorf("restore from checkpoint: %w", errdefs.ErrNotImplemented))
	}
	begin := time.Now()
	sbPlan, plan, cfg, host, err := s.plan(ctx, r)
	if err != nil {
		return nil, toGRPC(err)
	}
	ctx, span := s.startCreateSpan(ctx, r.ID, begin) // tracing.go
	defer func() { tracing.End(span, retErr) }()

	c := &container{
		id: r.ID, bundle: r.Bundle, rootfs: plan.Rootfs, execs: map[string]*process{},
		init:    newProcess(r.ID, "", stdio{stdin: r.Stdin, stdout: r.Stdout, stderr: r.Stderr, terminal: r.Terminal}),
		created: make(chan struct{}),
	}
	cctx, cancel, joined, err := s.reserve(ctx, c, plan)
	if err != nil {
		return nil, toGRPC(err)
	}
	defer cancel(nil)

	// rollback undoes the steps below in reverse order when Create fails; the last step
	// releases the reservation and wakes Wait and Delete.
	var rollback []func(context.Context)
	defer func() {
		if retErr == nil {
			close(c.created)
			return
		}
		cleanupCtx := context.WithoutCancel(ctx)
		for i := len(rollback) - 1; i >= 0; i-- {
			rollback[i](cleanupCtx)
		}
		s.release(c, plan)
		c.init.setExited(128 + int(syscall.SIGKILL))
		close(c.created)
	}()
	// fail names the cancellation rather than the step it interrupted.
	fail := func(err error) error {
		if cause := context.Cause(cctx); cause != nil {
			err = fmt.Errorf("create %s: %w", r.ID, cause)
		}
		return toGRPC(err)
	}
	// The task's pid on the host, from now until its exit is recorded (the rollback's
	// setExited ends it). It joins the sandbox's host cgroups once they exist (below).
	if err := c.init.startStandIn(nil); err != nil {
		return nil, fail(err)
	}

	// A rootfs on a host block device (devmapper) or an image file (blockfile) goes to the
	// VM as a disk, image layers on files (erofs) as disks with an overlay the guest builds;
	// any other is mounted here and shared.
	eff := cfg
	if sbPlan != nil {
		eff = sbPlan.Config
	} else if joined != nil {
		eff = joined.Effective()
	}
	// A VMM with its own host ids (hypervisor.vmm_id_range) sees the rootfs idmapped into
	// them, so the idmapped part of the mount comes after the sandbox; otherwise a rootfs
	// that cannot be mounted fails the create before a VM boots.
	plan.RootfsDisk, plan.RootfsOverlay, err = oci.RootfsDisks(specMounts(r.Rootfs), eff)
	if err != nil {
		return nil, fail(fmt.Errorf("create %s: %w", r.ID, err))
	}
	volumes, err := s.directVolumes(plan, eff) // volume.go
	if err != nil {
		return nil, fail(fmt.Errorf("create %s: %w", r.ID, err))
	}
	mountRootfs := !plan.RootfsOnDisks() && len(r.Rootfs) > 0
	idmapped := sbPlan != nil && sbPlan.VMMIDs != nil || joined != nil && joined.VMMIDs() != nil
	if idmapped && eff.Hypervisor.SharedFS == hypervisor.SharedFSNone {
		idmapped = false // copy mode: the shim copies the rootfs, the VMM never sees it
	}
	// One overlay mount has its layers idmapped (mountRootfs); any other rootfs, or a
	// bundle's rootfs directory, is mounted as it is and presented through an idmapped
	// overlay of its own (mountIDMapped).
	layersIDMapped := idmapped && isOneOverlay(r.Rootfs)
	if mountRootfs && !layersIDMapped {
		if err := c.tracedMountRootfs(cctx, r.Rootfs, nil); err != nil {
			return nil, fail(err)
		}
		rollback = append(rollback, c.unmountRootfs)
	}

	sb := joined
	if sbPlan != nil {
		if sb, err = s.createSandbox(cctx, sbPlan, cfg, host); err != nil {
			return nil, fail(err)
		}
		rollback = append(rollback, func(ctx context.Context) {
			if err := sb.Delete(ctx); err != nil {
				log.G(ctx).WithError(err).Warn("remove sandbox after failed create")
			}
		})
	}
	// The task's pid goes where the sandbox's VM runs, as runc's container process is in
	// the container's cgroup: the host's /proc/PID/cgroup shows the pod's cgroup. The
	// stand-in ends before the sandbox's rollback, which cannot remove a cgroup with a
	// process in it.
	if c.cgroups, err = hostcgroup.Dirs(sb.Dir()); err != nil {
		return nil, fail(fmt.Errorf("create %s: %w", r.ID, err))
	}
	rollback = append(rollback, func(context.Context) { c.init.stopStandIn() })
	if err := c.init.joinCgroups(c.cgroups); err != nil {
		return nil, fail(err)
	}
	// hypervisor.vmm_file_ids = "container": every layer idmapped, writable ones too, so
	// files keep their host owners (idmap_mapped.go); "sandbox": writes go to the
	// sandbox's ids (idmap.go).
	switch mapped := sb.FileIDsMapped(); {
	case !idmapped || plan.RootfsOnDisks():
	case layersIDMapped && mapped:
		if err := c.tracedMountRootfsMapped(cctx, r.Rootfs, *sb.VMMIDs()); err != nil {
			return nil, fail(err)
		}
		rollback = append(rollback, c.unmountRootfs)
	case layersIDMapped:
		if err := c.tracedMountRootfs(cctx, r.Rootfs, sb.VMMIDs()); err != nil {
			return nil, fail(err)
		}
		rollback = append(rollback, c.unmountRootfs)
	default:
		present := c.mountIDMapped // idmap.go
		if mapped {
			present = c.mountDirMapped // idmap_mapped.go
		}
		shared, err := present(c.rootfs, *sb.VMMIDs())
		if err != nil {
			return nil, fail(err)
		}
		rollback = append(rollback, c.unmountRootfs)
		plan.Rootfs = shared
	}
	// Volumes on overlays, which take no idmapped mount, are shared through idmapped
	// overlays of their layers (volume_idmap.go).
	var mappedSources map[int]bool
	if idmapped && sb.FileIDsMapped() {
		rollback = append(rollback, c.unmountVolumes)
		if mappedSources, err = c.mountOverlayVolumes(plan, *sb.VMMIDs()); err != nil {
			return nil, fail(fmt.Errorf("create %s: %w", r.ID, err))
		}
	}

	ctrStart := time.Now()
	ctr, err := sb.CreateContainer(cctx, sandbox.ContainerConfig{
		Plan: plan, Stdin: r.Stdin != "", InitLog: metadataOn(ctx, shimproto.MetadataInitLog), // initlog.go
		IDMappedSources: mappedSources,
	})
	if err != nil {
		return nil, fail(err)
	}
	ctrTook := time.Since(ctrStart)
	s.noteDirectVolumes(ctx, volumes, sb.ID()) // volume.go
	if sbPlan == nil {
		// The sandbox's own container goes with the sandbox.
		rollback = append(rollback, func(ctx context.Context) {
			if err := sb.DeleteContainer(ctx, r.ID); err != nil && !errdefs.IsNotFound(err) {
				log.G(ctx).WithError(err).Warn("remove container after failed create")
			}
		})
	}
	if err := c.init.openIO(cctx, ctr); err != nil {
		return nil, fail(err)
	}
	rollback = append(rollback, func(context.Context) { c.init.closeIO() })

	// The spec: a failed create-time hook destroys the container, then the poststop hooks
	// run (last, after the rollback removed the container).
	c.hooks = s.newOCIHooks(plan.Spec, r.ID, r.Bundle, sb.NetNS()) // hooks.go
	rollback = append([]func(context.Context){func(ctx context.Context) {
		c.hooks.warn(ctx, specs.StateStopped, hooks.Poststop)
	}}, rollback...)
	if err := c.hooks.run(cctx, specs.StateCreating, hooks.Prestart, hooks.CreateRuntime, hooks.CreateContainer); err != nil {
		return nil, fail(err)
	}

	if err := s.commit(cctx, c, ctr, sbPlan, sb); err != nil {
		return nil, fail(err)
	}
	s.exportAgentSpans(cctx, sb) // tracing.go
	s.metrics.observeCreate(sb, sbPlan != nil, ctrTook, time.Since(begin))
	s.send(runtime.TaskCreateEventTopic, &eventstypes.TaskCreate{
		ContainerID: r.ID, Bundle: r.Bundle, Rootfs: r.Rootfs,
		IO:  &eventstypes.TaskIO{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal},
		Pid: c.init.pid(),
	})
	return &taskAPI.CreateTaskResponse{Pid: c.init.pid()}, nil
}

// plan reads the bundle and produces the task's one plan: the sandbox plan (with its
// container, the configuration it was made from and the host) for a container that creates
// the sandbox, else the container plan alone. Errors are ErrInvalidArgument.
func (s *service) plan(ctx context.Context, r *taskAPI.CreateTaskRequest) (*oci.Sandbox, *oci.Container, *config.Config, config.Host, error) {
	var host config.Host
	spec, err := bundle.LoadSpec(r.Bundle)
	if err != nil {
		return nil, nil, nil, host, fmt.Errorf("%w: %w", errdefs.ErrInvalidArgument, err)
	}
	kind, sid, err := oci.Identify(r.ID, spec.Annotations)
	if err != nil {
		return nil, nil, nil, host, fmt.Errorf("container %s: %w: %w", r.ID, errdefs.ErrInvalidArgument, err)
	}
	if !kind.CreatesSandbox() {
		plan, err := oci.ContainerConfig(ctx, r.ID, r.Bundle, spec, oci.Options{SandboxNamespaces: s.sandboxNamespaces(sid)})
		if err != nil {
			return nil, nil, nil, host, fmt.Errorf("%w: %w", errdefs.ErrInvalidArgument, err)
		}
		return nil, plan, nil, host, nil
	}
	cfg, err := loadConfig(r)
	if err != nil {
		return nil, nil, nil, host, err
	}
	debugFromConfig(ctx, cfg)
	s.tracingFromConfig(ctx, cfg) // tracing.go
	if host, err = config.DetectHost(); err != nil {
		return nil, nil, nil, host, fmt.Errorf("inspect host: %w", err)
	}
	opts := oci.Options{Host: host}
	if ok, why := rootless.Detect(); ok {
		log.G(ctx).WithField("why", why).Debug("rootless mode")
		opts.Rootless = true
	}
	sbPlan, err := oci.SandboxConfig(ctx, r.ID, r.Bundle, spec, cfg, opts)
	if err != nil {
		return nil, nil, nil, host, fmt.Errorf("%w: %w", errdefs.ErrInvalidArgument, err)
	}
	// A VM from the template with an unprivileged VMM needs a hypervisor that opens the
	// template read-only; refused here rather than booting cold without a word.
	if sbPlan.VMMIDs != nil && sbPlan.Config.Factory.EnableTemplate {
		if err := hypervisor.CheckUnprivilegedTemplates(sbPlan.Config.Hypervisor.Driver, sbPlan.VM.Path); err != nil {
			return nil, nil, nil, host, fmt.Errorf("sandbox %s: %w: %w", sbPlan.ID, errdefs.ErrFailedPrecondition, err)
		}
	}
	return sbPlan, sbPlan.Container, cfg, host, nil
}

// sandboxNamespaces are the host paths that stand for the namespaces of pod sandbox sid
// (oci.SandboxNamespacePaths): those of the pid this shim reports for the sandbox's task
// (its stand-in's) and the paths in the sandbox container's spec. Nil when the shim runs
// no such sandbox.
func (s *service) sandboxNamespaces(sid string) map[specs.LinuxNamespaceType][]string {
	s.mu.Lock()
	sc := s.containers[sid]
	s.mu.Unlock()
	if sc == nil {
		return nil
	}
	spec, err := bundle.LoadSpec(sc.bundle)
	if err != nil {
		spec = nil
	}
	return oci.SandboxNamespacePaths(int(sc.init.pid()), spec)
}

// reserve registers c as being created and, for a container that creates the sandbox,
// takes the sandbox slot. It returns the context the rest of Create runs under and its
// cancel function (also c.cancelCreate) and, for a pod container, the sandbox it joins.
func (s *service) reserve(ctx context.Context, c *container, plan *oci.Container) (context.Context, context.CancelCauseFunc, *sandbox.Sandbox, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.containers[c.id]; dup {
		return nil, nil, nil, fmt.Errorf("container %s: %w", c.id, errdefs.ErrAlreadyExists)
	}
	var joined *sandbox.Sandbox
	if plan.Kind.CreatesSandbox() {
		switch {
		case s.sb != nil:
			return nil, nil, nil, fmt.Errorf("shim already runs sandbox %s, cannot create sandbox %s: %w", s.sb.ID(), plan.SandboxID, errdefs.ErrAlreadyExists)
		case s.booting != "":
			return nil, nil, nil, fmt.Errorf("shim already creates sandbox %s, cannot create sandbox %s: %w", s.booting, plan.SandboxID, errdefs.ErrAlreadyExists)
		}
		s.booting = plan.SandboxID
	} else {
		if s.sb == nil || s.sb.ID() != plan.SandboxID {
			return nil, nil, nil, fmt.Errorf("sandbox %s of container %s does not run in this shim: %w", plan.SandboxID, c.id, errdefs.ErrFailedPrecondition)
		}
		joined = s.sb
	}
	cctx, cancel := context.WithCancelCause(ctx)
	c.creating, c.cancelCreate = true, cancel
	s.containers[c.id] = c
	return cctx, cancel, joined, nil
}

// commit makes a created container (and the sandbox it created, when sbPlan is set)
// visible to every call. It fails when the creation was cancelled meanwhile, or when the
// sandbox a pod container joined was deleted meanwhile.
func (s *service) commit(ctx context.Context, c *container, ctr *sandbox.Container, sbPlan *oci.Sandbox, sb *sandbox.Sandbox) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := context.Cause(ctx); err != nil {
		return fmt.Errorf("create %s: %w", c.id, err)
	}
	if sbPlan != nil {
		s.sb = sb
		s.booting = ""
		go s.watchOOM(sb)
		// Listening is quick; without the socket the sandbox runs unmonitored.
		ms, err := serveMetrics(s.ctx, s.metrics, sb.Dir(), s.socketAPI(sb))
		if err != nil {
			log.G(ctx).WithError(err).Warn("metrics socket: vessel-monitor sees no guest figures")
		}
		s.metricsSrv = ms
	} else if s.sb != sb {
		return fmt.Errorf("create %s: sandbox %s was deleted meanwhile: %w", c.id, sb.ID(), errdefs.ErrFailedPrecondition)
	}
	c.ctr = ctr
	c.creating, c.cancelCreate = false, nil
	return nil
}

// release undoes reserve after a failed Create.
func (s *service) release(c *container, plan *oci.Container) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.containers[c.id] == c {
		delete(s.containers, c.id)
	}
	if plan.Kind.CreatesSandbox() && s.booting == plan.SandboxID {
		s.booting = ""
	}
	c.creating, c.cancelCreate = false, nil
}

// createSandbox boots the VM for a sandbox plan. cfg is the configuration before the
// pod's annotations (the VM factory is built from it).
func (s *service) createSandbox(ctx context.Context, plan *oci.Sandbox, cfg *config.Config, host config.Host) (*sandbox.Sandbox, error) {
	return sandbox.Create(ctx, sandbox.Config{
		ID:            plan.ID,
		Root:          s.root,
		Hypervisor:    plan.Config.Hypervisor.Driver,
		VM:            plan.VM,
		Hostname:      plan.Container.Hostname,
		SandboxPidNS:  plan.Container.Kind == oci.KindPodSandbox,
		Timeouts:      plan.Agent.Timeouts,
		KernelModules: plan.Agent.KernelModules,
		AgentPolicy:   plan.Agent.Policy,
		Effective:     plan.Config,
		VMSource:      vmSource(ctx, cfg, host), // factory.go
		Network:       plan.Network,
		HostCgroup:    plan.HostCgroup,
		VMMIDs:        plan.VMMIDs,
		Resize:        !plan.Config.Runtime.StaticSandboxResourceMgmt,
		Limits:        plan.Limits,
		AgentTracing:  plan.Agent.Tracing,
		AgentObserver: s.metrics.observeCall,
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
	s.watchExit(c, p)
	if r.ExecID == "" {
		c.hooks.warn(ctx, specs.StateRunning, hooks.Poststart)
	}
	pid := p.pid()
	if r.ExecID == "" {
		s.send(runtime.TaskStartEventTopic, &eventstypes.TaskStart{ContainerID: r.ID, Pid: pid})
	} else {
		s.send(runtime.TaskExecStartedEventTopic, &eventstypes.TaskExecStarted{ContainerID: r.ID, ExecID: r.ExecID, Pid: pid})
	}
	return &taskAPI.StartResponse{Pid: pid}, nil
}

// watchExit starts waitExit for p unless it runs already. The goroutine is owned by the
// service: it ends when the process exits or the guest is gone (s.ctx ends with the shim).
func (s *service) watchExit(c *container, p *process) {
	p.watch.Do(func() { go s.waitExit(c, p) })
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
		ContainerID: c.id, ID: p.id(), Pid: p.pid(), ExitStatus: uint32(code), ExitedAt: protobuf.ToTimestamp(p.exitedAt()),
	})
}

// Delete deletes an exec'd process, or the container (and, for the sandbox's own
// container, the VM). Deleting a task whose Create still runs cancels the creation and
// returns once Create has cleaned up.
func (s *service) Delete(ctx context.Context, r *taskAPI.DeleteRequest) (*taskAPI.DeleteResponse, error) {
	if r.ExecID != "" {
		c, p, err := s.getProcess(r.ID, r.ExecID)
		if err != nil {
			return nil, toGRPC(err)
		}
		if p.status() == task.Status_RUNNING {
			return nil, toGRPC(fmt.Errorf("exec %s of %s is running: %w", r.ExecID, r.ID, errdefs.ErrFailedPrecondition))
		}
		c.removeExec(r.ExecID)
		p.closeIO()
		return &taskAPI.DeleteResponse{Pid: p.pid(), ExitStatus: uint32(p.exitCode()), ExitedAt: protobuf.ToTimestamp(p.exitedAt())}, nil
	}

	s.mu.Lock()
	c, ok := s.containers[r.ID]
	if !ok {
		s.mu.Unlock()
		return nil, toGRPC(fmt.Errorf("container %s: %w", r.ID, errdefs.ErrNotFound))
	}
	if c.creating {
		c.cancelCreate(errCreateCancelled)
		s.mu.Unlock()
		select {
		case <-c.created:
		case <-ctx.Done():
			return nil, toGRPC(fmt.Errorf("delete %s: wait for its cancelled create: %w", r.ID, ctx.Err()))
		}
		p := c.init
		return &taskAPI.DeleteResponse{Pid: p.pid(), ExitStatus: uint32(p.exitCode()), ExitedAt: protobuf.ToTimestamp(p.exitedAt())}, nil
	}
	sb, ends := s.detach(c)
	s.mu.Unlock()

	if err := s.teardown(ctx, c, sb, ends); err != nil {
		log.G(ctx).WithError(err).Warn("delete")
	}
	c.hooks.warn(ctx, specs.StateStopped, hooks.Poststop) // hooks.go
	p := c.init
	if p.status() != task.Status_STOPPED {
		p.setExited(128 + int(syscall.SIGKILL))
	}
	s.send(runtime.TaskDeleteEventTopic, &eventstypes.TaskDelete{
		ContainerID: r.ID, Pid: p.pid(), ExitStatus: uint32(p.exitCode()), ExitedAt: protobuf.ToTimestamp(p.exitedAt()),
	})
	return &taskAPI.DeleteResponse{Pid: p.pid(), ExitStatus: uint32(p.exitCode()), ExitedAt: protobuf.ToTimestamp(p.exitedAt())}, nil
}

// detach removes a created container from the service and tells whether its removal ends
// the sandbox: the sandbox's own container, or the last container, ends the VM. Then the
// sandbox is detached too (sb is returned, s.sb cleared) and creations still running in it
// are cancelled.
// Preconditions: s.mu is held.
func (s *service) detach(c *container) (sb *sandbox.Sandbox, ends bool) {
	sb = s.sb
	delete(s.containers, c.id)
	ends = sb != nil && (len(s.containers) == 0 || c.id == sb.ID())
	if ends {
		s.sb = nil
		s.metricsSrv.stop() // quick: it waits for no scrape in flight
		s.metricsSrv = nil
		for _, o := range s.containers {
			if o.creating {
				o.cancelCreate(errCreateCancelled)
			}
		}
	}
	return sb, ends
}

// teardown removes a detached container from the sandbox and the host and, when ends is
// set, deletes the sandbox; it runs without s.mu. When the sandbox ends, the guest is asked
// to remove the container only while one of its processes still runs, so that the guest,
// not the VM's end, stops it. Once every exit status is collected, stopping the VM is all
// the guest needs (two guest round trips fewer). Every step runs whatever failed before it.
func (s *service) teardown(ctx context.Context, c *container, sb *sandbox.Sandbox, ends bool) error {
	var errs []error
	if sb != nil && (!ends || c.running()) {
		if err := sb.DeleteContainer(ctx, c.id); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	c.closeIO()
	c.stopStandIns()
	if ends {
		// The guest's spans of this Delete go before the VM does.
		s.exportAgentSpans(ctx, sb) // tracing.go
		if err := sb.Delete(ctx); err != nil {
			errs = append(errs, err)
		}
		s.forgetDirectVolumes(ctx, sb.ID()) // volume.go
	}
	// After the VM stopped, when it ends: until then the guest reads the rootfs.
	c.unmountRootfs(ctx)
	c.unmountVolumes(ctx) // volume_idmap.go
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
	p.execOptions = sandbox.ExecOptions{
		Stdin:        r.Stdin != "",
		IgnorePaused: metadataOn(ctx, shimproto.MetadataIgnorePaused), // initlog.go
		InitLog:      metadataOn(ctx, shimproto.MetadataInitLog),
	}
	if err := c.addExec(p); err != nil {
		return nil, toGRPC(err)
	}
	s.send(runtime.TaskExecAddedEventTopic, &eventstypes.TaskExecAdded{ContainerID: r.ID, ExecID: r.ExecID})
	return &ptypes.Empty{}, nil
}

// ResizePty resizes a process's terminal. A process without a terminal has nothing to
// resize: the request is ignored, as runc's shim does.
func (s *service) ResizePty(ctx context.Context, r *taskAPI.ResizePtyRequest) (*ptypes.Empty, error) {
	c, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, toGRPC(err)
	}
	if !p.stdio.terminal {
		return &ptypes.Empty{}, nil
	}
	if err := c.ctr.ResizeTTY(ctx, r.ExecID, r.Height, r.Width); err != nil {
		return nil, toGRPC(err)
	}
	return &ptypes.Empty{}, nil
}

// State reports a process's state. A task whose Create still runs is CREATED: it exists
// and runs nothing until Start.
func (s *service) State(ctx context.Context, r *taskAPI.StateRequest) (*taskAPI.StateResponse, error) {
	c, p, err := s.lookupProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, toGRPC(err)
	}
	st := p.status()
	if r.ExecID == "" && st == task.Status_RUNNING && c.ctr.State() == sandbox.StatePaused {
		st = task.Status_PAUSED
	}
	return &taskAPI.StateResponse{
		ID: r.ID, ExecID: r.ExecID, Bundle: c.bundle, Pid: p.pid(), Status: st,
		Stdin: p.stdio.stdin, Stdout: p.stdio.stdout, Stderr: p.stdio.stderr, Terminal: p.stdio.terminal,
		ExitStatus: uint32(p.exitCode()), ExitedAt: protobuf.ToTimestamp(p.exitedAt()),
	}, nil
}

// Pids lists the container's processes. Those the shim started (the init process and the
// exec'd ones) are listed under their pids on the host, their stand-ins', the pids the
// task API reports for them; the others (their children) have no host pid and are
// listed under their pids in the guest. A task whose Create still runs has none yet.
func (s *service) Pids(ctx context.Context, r *taskAPI.PidsRequest) (*taskAPI.PidsResponse, error) {
	c, creating, err := s.lookup(r.ID)
	if err != nil {
		return nil, toGRPC(err)
	}
	resp := &taskAPI.PidsResponse{}
	if creating {
		return resp, nil
	}
	procs, err := c.ctr.Processes(ctx)
	if err != nil {
		return nil, toGRPC(err)
	}
	for _, gp := range procs {
		info, err := c.processInfo(gp)
		if err != nil {
			return nil, toGRPC(err)
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

// Kill signals one process or, with All, every process of the container. Killing the
// init process of a task whose Create still runs cancels the creation (Create fails and
// cleans up; the task's Wait returns).
func (s *service) Kill(ctx context.Context, r *taskAPI.KillRequest) (*ptypes.Empty, error) {
	s.mu.Lock()
	if c, ok := s.containers[r.ID]; ok && c.creating && r.ExecID == "" {
		c.cancelCreate(errCreateCancelled)
		s.mu.Unlock()
		return &ptypes.Empty{}, nil
	}
	s.mu.Unlock()
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
	created := p.status() == task.Status_CREATED
	if err := c.ctr.Kill(ctx, r.ExecID, syscall.Signal(r.Signal), r.All); err != nil {
		return nil, toGRPC(err)
	}
	if created && r.Signal != 0 {
		// The init process exists in the guest, waiting to be started: if the signal ends
		// it, its exit is reported like any other (runc's shim does the same), so a client
		// waiting for the task's exit is not left waiting.
		s.watchExit(c, p)
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

// Wait blocks until the process exits. The init process of a task whose Create fails
// exits with 128+SIGKILL.
func (s *service) Wait(ctx context.Context, r *taskAPI.WaitRequest) (*taskAPI.WaitResponse, error) {
	_, p, err := s.lookupProcess(r.ID, r.ExecID)
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

// Connect returns the shim's pid and the task's (its stand-in's; 0 for a task the shim
// does not hold).
func (s *service) Connect(ctx context.Context, r *taskAPI.ConnectRequest) (*taskAPI.ConnectResponse, error) {
	resp := &taskAPI.ConnectResponse{ShimPid: uint32(os.Getpid())}
	if c, _, err := s.lookup(r.ID); err == nil {
		resp.TaskPid = c.init.pid()
	}
	return resp, nil
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
// debugFromConfig turns on debug logging for the rest of the shim's life when the
// configuration asks for it (runtime.enable_debug), as containerd's -debug does from the
// start. It never turns debug logging off.
func debugFromConfig(ctx context.Context, cfg *config.Config) {
	if !cfg.Runtime.EnableDebug || log.GetLevel() == log.DebugLevel || log.GetLevel() == log.TraceLevel {
		return
	}
	if err := log.SetLevel("debug"); err != nil {
		log.G(ctx).WithError(err).Warn("runtime.enable_debug: set the log level")
		return
	}
	log.G(ctx).Debug("debug logging on (runtime.enable_debug)")
}

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
