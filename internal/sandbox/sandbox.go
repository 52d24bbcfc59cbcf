// Package sandbox is the orchestrator: a Sandbox is one VM with an agent inside, holding
// Containers, which hold Processes. Every step that creates something registers its undo, so
// a failed create leaves nothing behind, and Delete tears down everything that exists,
// whatever state the VM is in.
package sandbox

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
	"github.com/vessel-containers/vessel/internal/agentclient"
	"github.com/vessel-containers/vessel/internal/config"
	"github.com/vessel-containers/vessel/internal/containerid"
	"github.com/vessel-containers/vessel/internal/hostcgroup"
	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/idrange"
	"github.com/vessel-containers/vessel/internal/network"
	"github.com/vessel-containers/vessel/internal/oci"
	"github.com/vessel-containers/vessel/internal/persist"
	"github.com/vessel-containers/vessel/internal/portforward"
	"github.com/vessel-containers/vessel/internal/sharefs"
	"github.com/vessel-containers/vessel/internal/sharefs/virtiofsd"
	"github.com/vessel-containers/vessel/internal/tracing"
)

// Config describes a sandbox to create. The shim fills it from the sandbox plan
// (oci.SandboxConfig).
type Config struct {
	// ID names the sandbox; it is also the name of its state directory.
	ID string
	// Root holds the sandbox state directories (default persist.DefaultRoot).
	Root string
	// Hypervisor is the registered driver name (default "qemu").
	Hypervisor string
	// VM sizes and configures the VM. ID, StateDir and the shared-fs fields are filled in
	// by the sandbox.
	VM hypervisor.Config
	// Hostname of the guest (default: the sandbox id, truncated to 63 bytes).
	Hostname string
	// SandboxPidNS makes the sandbox's containers share one pid namespace.
	SandboxPidNS bool
	// Timeouts bound the agent requests: Ready the boot up to the agent's first answer,
	// Create the sandbox's and containers' creation.
	Timeouts agentclient.Timeouts
	// KernelModules are loaded by the agent when the sandbox is created.
	KernelModules []oci.KernelModule
	// AgentPolicy, when set, is put in force in the guest before the sandbox is created
	// there (oci.Agent.Policy): every later request is checked against it.
	AgentPolicy []byte
	// Effective is the sandbox's effective configuration (oci.Sandbox.Config); container
	// plans are converted for the guest with it (oci.GuestSpec). Nil means config.Default().
	Effective *config.Config
	// VMSource, when set, is asked for a booted VM first (factory.go); nil boots cold.
	// A sandbox with network devices always boots cold: a VM from the factory has none.
	VMSource VMSource
	// Network is the pod network namespace to attach the VM to (network.go).
	Network network.Config
	// Resize grows the VM as containers are created or updated, to Limits' defaults plus
	// the containers' summed CPU and memory limits (oci.ComputeSizing), up to Limits'
	// maxima; the VM must be booted with room (VM.MaxVCPUs, VM.MaxMemoryMiB). Without it
	// the VM keeps its boot size.
	Resize bool
	// Limits size the VM for Resize (oci.Sandbox.Limits).
	Limits config.Limits
	// HostCgroup is the pod's host cgroup: the calling process joins it before the VM
	// starts, so the VM is born in it (hostcgroup.Join).
	HostCgroup hostcgroup.Config
	// VMMIDs, when set, is the pool the VMM's unprivileged host ids are leased from
	// (userns.go); nil runs the VMM as root.
	VMMIDs *idrange.Pool
	// VMMIDLeaseDir is where VMMIDs leases are kept (default idrange.DefaultLeaseDir).
	VMMIDLeaseDir string
	// AgentTracing sends the trace context of traced agent requests to the agent, which
	// records spans under it (oci.Agent.Tracing); collect them with Agent().CollectSpans.
	AgentTracing bool
	// AgentObserver, when set, is told of every agent call (agentclient.Observer).
	AgentObserver agentclient.Observer
}

// Phase is one part of a sandbox's creation and how long it took.
type Phase struct {
	Name     string
	Duration time.Duration
}

// Names of the phases of Create, in order (CreatePhases).
const (
	PhaseHostPrep     = "host_prep"     // state directory, shares, host cgroup, network attachment
	PhaseVMStart      = "vm_start"      // a running VMM: from the factory, or after its attempts a cold start
	PhaseAgentConnect = "agent_connect" // guest boot up to the agent's first answer, clock and RNG
	PhaseSandboxSetup = "sandbox_setup" // agent policy, CreateSandbox, network
)

// State of a sandbox or container.
type State string

const (
	StateCreated State = "created"
	StateRunning State = "running"
	StatePaused  State = "paused"
	StateStopped State = "stopped"
)

// Sandbox is a running VM with its agent.
type Sandbox struct {
	id    string
	dir   string
	vm    hypervisor.VM
	agent *agentclient.Client
	share *sharefs.Share
	cfg   Config
	// vmStart is the VMM's process start time (factory.go); with the pid it identifies the
	// VMM in the persisted state. Set whenever vm is.
	vmStart uint64
	// copies is copy mode's state (shared_fs = "none", copy.go); nil in other modes. Set
	// before the VM boots.
	copies *copies
	// fsd is the sandbox's virtiofsd (virtio-fs only, virtiofs.go); set before the VM boots.
	fsd *virtiofsd.Daemon
	// fsdWatch is closed when watchVirtioFSD returns; set once the VM runs.
	fsdWatch chan struct{}
	// stopPropagation stops the share's propagation watcher (shareserver.go); nil when
	// there is none. Set once the VM runs.
	stopPropagation func()
	// disks are the host block devices attached to the VM (disk.go).
	disks diskSet
	// vmmIDs is the lease of the VMM's host ids (userns.go); nil when it runs as root.
	vmmIDs *idrange.Lease
	// factoryIDs is the slot of a VM from the factory's cache while Create decides
	// whether to keep it (userns.go).
	factoryIDs *idrange.Range
	// netMu serializes SyncNetwork (network.go): a rescan of the pod network namespace,
	// the hot-plugs it leads to and the guest's configuration. Never held with mu.
	netMu sync.Mutex
	// phases are the durations of Create's phases; written only by Create.
	phases []Phase
	// factory is what the VM factory did for the sandbox (Factory*); written only by Create.
	factory string
	// created is when Create began.
	created time.Time
	// vmcfg is the VM's configuration at boot.
	vmcfg hypervisor.Config
	// debug relays `vessel debug` to the agent (debug.go); nil unless
	// agent.debug_console_enabled.
	debug *debugRelay
	// portFwd relays CRI port forwarding into the guest (portforward.go); nil without a
	// pod network namespace.
	portFwd *portforward.Forwarder

	// resizeMu serialises fit and trim (resize.go): one resize at a time, from the
	// containers' limits at its start. It guards parked.
	resizeMu sync.Mutex
	// parked are the places of the hot-plugged vCPUs the guest keeps offline because the
	// driver cannot remove them (hypervisor.CPUShrinker.CanShrinkCPUs), newest first: they
	// are always the newest plugged vCPUs. The vCPUs the guest uses are the plugged ones
	// less these (vcpusInUse). Owned by fit and trim.
	parked []hypervisor.CPUPlace
	// vmWatch is closed when watchVM returns; set once the sandbox is created.
	vmWatch chan struct{}

	// mu guards containers, their resources, state, fsdFailure, failure and deleting.
	mu         sync.Mutex
	containers map[string]*Container
	state      State
	// fsdFailure is the virtiofsd exit that ended the sandbox (watchVirtioFSD).
	fsdFailure error
	// failure is why the VM stopped without a stop request (watchVM).
	failure error
	// deleting is set once Delete began: the VM's exit is then expected.
	deleting bool
}

// undo collects cleanup steps and runs them in reverse order.
type undo []func(context.Context) error

func (u *undo) add(f func(context.Context) error) { *u = append(*u, f) }

func (u undo) run(ctx context.Context) {
	for i := len(u) - 1; i >= 0; i-- {
		if err := u[i](ctx); err != nil {
			log.G(ctx).WithError(err).Warn("rollback step failed")
		}
	}
}

// cleanupContext outlives a cancelled request context so rollback still completes.
func cleanupContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
}

// Create boots the VM, waits for the agent and sets up the sandbox in the guest. On error
// everything it made is removed again.
func Create(ctx context.Context, cfg Config) (_ *Sandbox, retErr error) {
	if err := containerid.Validate(cfg.ID); err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	if cfg.Root == "" {
		cfg.Root = persist.DefaultRoot
	}
	if cfg.Hypervisor == "" {
		cfg.Hypervisor = "qemu"
	}
	if cfg.Effective == nil {
		cfg.Effective = config.Default()
	}
	if cfg.Hostname == "" {
		cfg.Hostname = cfg.ID
		if len(cfg.Hostname) > 63 {
			cfg.Hostname = cfg.Hostname[:63]
		}
	}
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("sandbox", cfg.ID))
	start := time.Now()
	ctx, span := tracing.Start(ctx, "sandbox create", trace.WithAttributes(attribute.String("sandbox.id", cfg.ID)))
	defer func() { tracing.End(span, retErr) }()

	var rollback undo
	defer func() {
		if retErr != nil {
			cctx, cancel := cleanupContext(ctx)
			defer cancel()
			rollback.run(cctx)
		}
	}()

	if err := os.MkdirAll(cfg.Root, 0o711); err != nil {
		return nil, fmt.Errorf("create sandbox root %s: %w", cfg.Root, err)
	}
	dir := filepath.Join(cfg.Root, cfg.ID)
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("sandbox %s: %w", cfg.ID, errdefs.ErrAlreadyExists)
		}
		return nil, fmt.Errorf("create sandbox dir: %w", err)
	}
	rollback.add(func(context.Context) error { return os.RemoveAll(dir) })

	share, err := sharefs.New(dir)
	if err != nil {
		return nil, err
	}
	rollback.add(share.Close)

	// Rolled back after the VM has stopped: a cgroup with processes cannot be removed.
	cgroup, err := hostcgroup.Join(ctx, dir, cfg.ID, cfg.HostCgroup)
	if err != nil {
		return nil, fmt.Errorf("sandbox %s: %w", cfg.ID, err)
	}
	defer cgroup.Close()
	rollback.add(func(ctx context.Context) error { return hostcgroup.Remove(ctx, dir) })

	// One queue pair per vCPU the VM boots with, as Kata does: with several vCPUs the
	// guest spreads packets over them.
	if cfg.Network.Queues == 0 {
		cfg.Network.Queues = int(cfg.VM.VCPUs)
	}
	if cfg.Network.NewNetNS && cfg.Network.NetNS == "" {
		path, err := network.CreateNetNS(dir)
		if err != nil {
			return nil, fmt.Errorf("sandbox %s: %w", cfg.ID, err)
		}
		rollback.add(func(context.Context) error { return network.RemoveNetNS(dir) })
		cfg.Network.NetNS = path
	}

	vmcfg := cfg.VM
	vmcfg.ID = cfg.ID
	vmcfg.StateDir = dir
	if vmcfg.SharedFS == "" {
		vmcfg.SharedFS = hypervisor.SharedFS9P
	}
	vmcfg.SharedDir = share.Dir()
	vmcfg.ShareTag = sharefs.Tag
	s := &Sandbox{id: cfg.ID, dir: dir, share: share, cfg: cfg, containers: map[string]*Container{}, state: StateCreated, created: start.UTC()}
	copyMode := isCopyMode(vmcfg)
	if copyMode {
		// No shared file system: the export stays empty and is never published.
		s.copies = newCopies(cfg.Effective, vmcfg.MemoryMiB) // copy.go
	}
	if cfg.VMMIDs != nil {
		if err := s.leaseVMMIDs(&vmcfg); err != nil { // userns.go
			return nil, fmt.Errorf("sandbox %s: %w", cfg.ID, err)
		}
		rollback.add(func(context.Context) error { return s.vmmIDs.Release() })
		// The VMM gets a mount namespace of its own with a copy of the export: the view
		// must be there, as a peer group it follows, before the VMM starts (virtiofsd's
		// start publishes it for virtio-fs; a VM from the factory's cache brings its own
		// export, view included).
		if vmcfg.SharedFS != hypervisor.SharedFSVirtioFS && !copyMode {
			if err := share.Publish(ctx); err != nil {
				return nil, fmt.Errorf("sandbox %s: %w", cfg.ID, err)
			}
		}
	}
	virtioFS := vmcfg.SharedFS == hypervisor.SharedFSVirtioFS
	if virtioFS {
		sock, err := s.startVirtioFSD(ctx) // virtiofs.go
		if err != nil {
			return nil, err
		}
		rollback.add(s.stopVirtioFSD)
		vmcfg.VirtioFSSocket = sock
	}
	att, err := s.attachNetwork(ctx, &vmcfg) // network.go
	if err != nil {
		return nil, err
	}
	rollback.add(func(ctx context.Context) error { return network.Teardown(ctx, dir) })
	s.phase(PhaseHostPrep, start)
	s.vmcfg = vmcfg
	err = s.boot(ctx, vmcfg, att, start) // factory.go
	att.CloseFiles()                     // the VMM holds its own copies now
	if err != nil {
		if fsdErr := s.virtioFSDErr(); fsdErr != nil && !errors.Is(fsdErr, virtiofsd.ErrHungUp) {
			return nil, fmt.Errorf("%w: %w", err, fsdErr)
		}
		return nil, err
	}
	rollback.add(s.vm.Stop)
	rollback.add(func(context.Context) error { s.expectVirtioFSDExit(); return nil })
	rollback.add(func(context.Context) error { return s.agent.Close() })
	if err := raiseOOMScore(s.vm.Pid(), vmOOMScoreAdj); err != nil { // oom.go
		return nil, fmt.Errorf("sandbox %s: %w", cfg.ID, err)
	}
	// A VM from the factory's cache was started elsewhere; a cold one is already inside.
	if err := cgroup.Add(s.vm.Pid()); err != nil {
		return nil, fmt.Errorf("sandbox %s: %w", cfg.ID, err)
	}
	if err := cgroup.Settle(ctx); err != nil {
		return nil, fmt.Errorf("sandbox %s: %w", cfg.ID, err)
	}
	if virtioFS {
		s.fsdWatch = make(chan struct{})
		go s.watchVirtioFSD(context.WithoutCancel(ctx), s.fsdWatch) // returns when the VM stops
	} else if cfg.VMMIDs == nil && !copyMode {
		// The view goes into the export only now: the VMM holds the export open (a VM from
		// the factory's cache brings its own), and the guest has not mounted it yet.
		if err := share.Publish(ctx); err != nil {
			return nil, fmt.Errorf("sandbox %s: %w", cfg.ID, err)
		}
	}
	if err := s.attachInFileServer(ctx); err != nil { // shareserver.go
		return nil, fmt.Errorf("sandbox %s: %w", cfg.ID, err)
	}
	rollback.add(func(context.Context) error { s.stopWatchingPropagation(); return nil })
	log.G(ctx).WithField("elapsed", time.Since(start)).Debug("agent ready")
	setupStart := time.Now()
	if err := s.setup(ctx, vmcfg, att); err != nil {
		return nil, err
	}
	s.phase(PhaseSandboxSetup, setupStart)
	s.vmWatch = make(chan struct{})
	go s.watchVM(context.WithoutCancel(ctx), s.vmWatch) // crash.go; returns when the VM stops
	log.G(ctx).WithField("elapsed", time.Since(start)).Debug("sandbox created")
	return s, nil
}

// setup creates the sandbox in the guest: the agent policy, CreateSandbox (shared
// directory, hostname, kernel modules), then the network; then the sandbox is running and
// its state saved.
func (s *Sandbox) setup(ctx context.Context, vmcfg hypervisor.Config, att *network.Attachment) (retErr error) {
	ctx, span := tracing.Start(ctx, "sandbox setup")
	defer func() { tracing.End(span, retErr) }()
	cfg := s.cfg
	if len(cfg.AgentPolicy) > 0 {
		if err := s.agent.SetPolicy(ctx, cfg.AgentPolicy); err != nil {
			return s.explain(fmt.Errorf("sandbox %s: agent policy: %w", cfg.ID, err))
		}
	}
	debugConsole := cfg.Effective.Agent.DebugConsoleEnabled
	storage := shareStorage(vmcfg)
	if s.copyMode() {
		storage = copyStorage(s.copies) // copy.go
	}
	modules := make([]*agentv1.KernelModule, 0, len(cfg.KernelModules))
	for _, m := range cfg.KernelModules {
		modules = append(modules, &agentv1.KernelModule{Name: m.Name, Parameters: m.Params})
	}
	if err := s.agent.CreateSandbox(ctx, &agentv1.CreateSandboxRequest{
		SandboxId:     cfg.ID,
		Hostname:      cfg.Hostname,
		Storages:      []*agentv1.Storage{storage},
		KernelModules: modules,
		SandboxPidns:  cfg.SandboxPidNS,
		DebugConsole:  debugConsole,
		GuestHookPath: cfg.Effective.Hypervisor.GuestHookPath,
	}); err != nil {
		return s.explain(fmt.Errorf("sandbox %s: %w", cfg.ID, err))
	}
	if debugConsole {
		if err := s.serveDebug(context.WithoutCancel(ctx)); err != nil { // debug.go
			return err
		}
		defer func() {
			if retErr != nil {
				s.stopDebug()
			}
		}()
	}
	if err := s.configureNetwork(ctx, att); err != nil { // network.go
		return s.explain(fmt.Errorf("sandbox %s: %w", cfg.ID, err))
	}
	s.startPortForward(ctx) // portforward.go
	defer func() {
		if retErr != nil {
			if err := s.stopPortForward(); err != nil {
				log.G(ctx).WithError(err).Warn("rollback: stop port forwarding")
			}
		}
	}()
	s.state = StateRunning
	return s.save()
}

// connect dials the agent, waits for its first answer (bounded by timeouts.Ready), then
// syncs the clock and seeds the guest RNG (both only after the first answer, so they carry
// fresh values).
func (s *Sandbox) connect(ctx context.Context, timeouts agentclient.Timeouts) (retErr error) {
	begin := time.Now()
	ctx, span := tracing.Start(ctx, "agent connect")
	defer func() { tracing.End(span, retErr) }()
	agent, err := agentclient.Dial(ctx, s.vm.Agent(), timeouts)
	if err != nil {
		return fmt.Errorf("sandbox %s: %w", s.id, err)
	}
	agent.SetTraceAgent(s.cfg.AgentTracing)
	agent.SetObserver(s.cfg.AgentObserver)
	check, err := agent.WaitReady(ctx)
	answered := time.Now()
	if err != nil {
		agent.Close()
		return s.explain(fmt.Errorf("sandbox %s: wait for agent: %w", s.id, err))
	}
	if err := syncGuestClock(ctx, agent); err != nil { // clock.go
		agent.Close()
		return s.explain(fmt.Errorf("sandbox %s: %w", s.id, err))
	}
	seed := make([]byte, 64)
	if _, err := rand.Read(seed); err != nil {
		agent.Close()
		return fmt.Errorf("sandbox %s: random seed: %w", s.id, err)
	}
	if err := agent.ReseedRandomDev(ctx, seed); err != nil {
		agent.Close()
		return s.explain(fmt.Errorf("sandbox %s: %w", s.id, err))
	}
	if s.cfg.AgentTracing && !slices.Contains(check.GetCapabilities(), agentv1.CapabilityTracing) {
		log.G(ctx).Warn("agent.enable_tracing: the guest's agent records no spans (rebuild the guest image)")
		agent.SetTraceAgent(false)
	}
	traceGuestBoot(ctx, agent, begin, answered) // bootlog.go
	s.agent = agent
	return nil
}

func shareStorage(vmcfg hypervisor.Config) *agentv1.Storage {
	if vmcfg.SharedFS == hypervisor.SharedFSVirtioFS {
		return &agentv1.Storage{Driver: "virtiofs", Source: sharefs.Tag, Fstype: "virtiofs", MountPoint: sharefs.GuestMountPoint}
	}
	msize := vmcfg.Msize9P
	if msize == 0 {
		msize = 512 << 10
	}
	return &agentv1.Storage{
		Driver:     "9p",
		Source:     sharefs.Tag,
		Fstype:     "9p",
		Options:    []string{"trans=virtio", "version=9p2000.L", fmt.Sprintf("msize=%d", msize), "cache=mmap"},
		MountPoint: sharefs.GuestMountPoint,
	}
}

// ID of the sandbox.
func (s *Sandbox) ID() string { return s.id }

// phase records that the phase name ran from start until now.
func (s *Sandbox) phase(name string, start time.Time) {
	s.phases = append(s.phases, Phase{Name: name, Duration: time.Since(start)})
}

// CreatePhases are the durations of Create's phases, in order.
func (s *Sandbox) CreatePhases() []Phase { return slices.Clone(s.phases) }

// FactoryResult is what the VM factory did for the sandbox (FactoryHit, FactoryMiss,
// FactoryFailed, FactorySkipped), or "" when it has none.
func (s *Sandbox) FactoryResult() string { return s.factory }

// Effective is the sandbox's effective configuration (Config.Effective).
func (s *Sandbox) Effective() *config.Config { return s.cfg.Effective }

// Dir is the sandbox's state directory.
func (s *Sandbox) Dir() string { return s.dir }

// VM is the sandbox's virtual machine.
func (s *Sandbox) VM() hypervisor.VM { return s.vm }

// Agent is the client of the sandbox's agent.
func (s *Sandbox) Agent() *agentclient.Client { return s.agent }

// vmAlive reports whether the VMM process still runs.
func (s *Sandbox) vmAlive() bool {
	select {
	case <-s.vm.Done():
		return false
	default:
		return true
	}
}

// explain adds the VM's exit reason to an agent error when the VM is gone, because
// "connection closed" alone does not tell the user the VM crashed.
func (s *Sandbox) explain(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, ttrpc.ErrClosed) {
		// The connection drops a moment before the VMM is reaped: give the exit time to
		// be observed so the error names the real cause.
		select {
		case <-s.vm.Done():
		case <-time.After(2 * time.Second):
		}
	}
	if s.vmAlive() {
		return err
	}
	if fsdErr := s.virtioFSDFailure(); fsdErr != nil {
		return fmt.Errorf("%w: vm stopped because its shared file system daemon failed: %w", err, fsdErr)
	}
	if vmErr := s.vm.Err(); vmErr != nil {
		return fmt.Errorf("%w: vm exited: %w", err, vmErr)
	}
	return fmt.Errorf("%w: vm exited", err)
}

// save persists the sandbox state.
// Preconditions: s.mu is held or the sandbox is not shared yet.
func (s *Sandbox) save() error {
	st := &persist.Sandbox{
		ID: s.id, Created: s.created, Hypervisor: s.cfg.Hypervisor, VMPid: s.vm.Pid(), VMStartTime: s.vmStart, State: string(s.state),
		AgentKind: s.vm.Agent().Kind, AgentPath: s.vm.Agent().Path, ShareDir: s.share.Dir(),
		DebugConsole: s.debug != nil, VMMIDLeaseDir: s.vmmIDLeaseDir(),
		VCPUs: s.vmcfg.VCPUs, MemoryMiB: s.vmcfg.MemoryMiB, SharedFS: string(s.vmcfg.SharedFS),
		Containers: map[string]persist.Container{},
	}
	if s.fsd != nil {
		st.FSDaemonPid, st.FSDaemonStartTime = s.fsd.ID().Pid, s.fsd.ID().StartTime
	}
	if s.failure != nil {
		st.Error = s.failure.Error()
	}
	for id, c := range s.containers {
		st.Containers[id] = persist.Container{ID: id, Rootfs: c.rootfs, State: string(c.getState()), Mounts: c.mounts, Devices: c.devices}
	}
	return persist.Save(s.dir, st)
}

// Delete stops the VM and removes the files shared with it and all sandbox state. It always
// runs every step and reports all failures together.
//
// The guest is not asked to remove its containers or destroy the sandbox: stopping the VM
// ends them, so those requests would only tidy a guest about to vanish, at a guest round
// trip each. A sandbox with guest OCI hooks is the exception: its guest destroys the
// sandbox first, so that the containers' poststop hooks run (runGuestPoststop). A caller that wants a container's exit status collects it before, or removes
// a container that still runs with DeleteContainer first. The shares are unmounted only
// once the VM is stopped, so the guest never sees them go.
func (s *Sandbox) Delete(ctx context.Context) (retErr error) {
	ctx, span := tracing.Start(ctx, "sandbox delete", trace.WithAttributes(attribute.String("sandbox.id", s.id)))
	defer func() { tracing.End(span, retErr) }()
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("sandbox", s.id))
	s.markStopped()
	s.logGuestBoot(ctx)

	var errs []error
	if s.copyMode() {
		// The watchers go first: they call the agent, whose connection closes next.
		if err := s.stopCopyWatchers(); err != nil { // copy.go
			errs = append(errs, err)
		}
	}
	s.stopDebug()               // debug.go
	s.stopWatchingPropagation() // shareserver.go
	// The relays close their guest connections while the agent still answers.
	if err := s.stopPortForward(); err != nil { // portforward.go
		errs = append(errs, err)
	}
	s.runGuestPoststop(ctx) // crash.go
	if err := s.agent.Close(); err != nil {
		log.G(ctx).WithError(err).Debug("close agent connection")
	}
	stopCtx, cancel := cleanupContext(ctx)
	defer cancel()
	s.expectVirtioFSDExit() // virtiofs.go
	_, stopSpan := tracing.Start(stopCtx, "vm stop")
	err := s.vm.Stop(stopCtx)
	tracing.End(stopSpan, err)
	if err != nil {
		errs = append(errs, fmt.Errorf("stop vm: %w", err))
	}
	if s.vmWatch != nil {
		// crash.go: the watcher returns once the VM is done; a VM that would not stop
		// keeps it, and the error above says so.
		select {
		case <-s.vm.Done():
			<-s.vmWatch
		default:
		}
	}
	if err := s.stopVirtioFSD(stopCtx); err != nil { // virtiofs.go
		errs = append(errs, err)
	}
	if err := network.Teardown(stopCtx, s.dir); err != nil {
		errs = append(errs, err)
	}
	// A host cgroup that cannot be removed yet keeps the directory with its record, for
	// Cleanup to retry; the share goes either way (cleanup.go).
	if err := hostcgroup.Remove(stopCtx, s.dir); err != nil {
		errs = append(errs, fmt.Errorf("%w (directory %s kept)", err, s.dir))
		if err := s.share.Close(ctx); err != nil {
			errs = append(errs, err)
		}
	} else if err := removeDir(ctx, s.share, s.dir); err != nil { // cleanup.go
		errs = append(errs, err)
	}
	if s.vmmIDs != nil {
		if err := s.vmmIDs.Release(); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("delete sandbox %s: %w", s.id, errors.Join(errs...))
	}
	return nil
}

// markStopped moves the sandbox and its containers to stopped and forgets the containers.
func (s *Sandbox) markStopped() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state = StateStopped
	s.deleting = true
	for id, c := range s.containers {
		c.setState(StateStopped)
		delete(s.containers, id)
	}
}
