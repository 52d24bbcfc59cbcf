package sandbox

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/network"
	"github.com/vessel-containers/vessel/internal/persist"
	"github.com/vessel-containers/vessel/internal/procid"
	"github.com/vessel-containers/vessel/internal/tracing"
)

// VMSource hands out VMs that are already booted: the VM factory (package factory,
// templates and a VM cache). Create asks it first and boots cold when it has nothing.
type VMSource interface {
	// VM returns a started VM for a sandbox that would boot with cfg (cfg's ID, StateDir
	// and SharedDir are the sandbox's; the VM's files end up in StateDir). The VM may be
	// smaller than cfg: Create grows it (hypervisor.Resizer). Its agent is up and has no
	// sandbox yet. An error says why no VM fits; it is logged, never returned.
	VM(ctx context.Context, driver string, cfg hypervisor.Config) (hypervisor.VM, error)
}

// What the VM factory did for a sandbox (Sandbox.FactoryResult); "" when the sandbox has
// no factory.
const (
	FactoryHit     = "hit"     // the sandbox runs a VM from the factory
	FactoryMiss    = "miss"    // the factory had no VM for it: booted cold
	FactoryFailed  = "failed"  // the factory's VM could not be recorded or did not answer or grow: booted cold
	FactorySkipped = "skipped" // the sandbox has network devices, and the hypervisor cannot hot-plug them into a factory's VM: booted cold
)

// warmReady bounds the first answer of a VM from the factory: its guest is already up, so
// an agent that stays silent this long is stuck (seen once under heavy load after a
// template restore), and a cold boot is the faster way to a sandbox.
const warmReady = 20 * time.Second

// boot starts the sandbox's VM and connects its agent: a VM from cfg.VMSource when it has
// one that answers, grows to the sandbox's size and takes the sandbox's NICs (att) by
// hot-plug, else a cold boot with the NICs on the command line. A VM from the factory that
// fails is stopped and logged, never returned as an error. On error nothing it started is
// left running.
func (s *Sandbox) boot(ctx context.Context, vmcfg hypervisor.Config, att *network.Attachment, start time.Time) error {
	vmStart := time.Now()
	if vm, vmm := s.warmVM(ctx, vmcfg); vm != nil {
		s.vm, s.vmStart = vm, vmm.StartTime
		log.G(ctx).WithField("pid", vm.Pid()).WithField("elapsed", time.Since(start)).Debug("vm started")
		timeouts := s.cfg.Timeouts
		if timeouts.Ready == 0 || timeouts.Ready > warmReady {
			timeouts.Ready = warmReady
		}
		s.phase(PhaseVMStart, vmStart)
		connectStart := time.Now()
		err := s.connect(ctx, timeouts)
		if err == nil {
			if err = s.grow(ctx); err == nil {
				err = s.plugNICs(ctx, att)
			}
			if err != nil {
				err = s.explain(err)
				s.agent.Close()
				s.agent = nil
			}
		}
		if err == nil {
			err = s.adoptVMMIDs() // userns.go
		}
		if err == nil {
			s.phase(PhaseAgentConnect, connectStart)
			s.factory = FactoryHit
			return nil
		}
		s.factory = FactoryFailed
		s.phases = s.phases[:len(s.phases)-1] // the cold boot's phases replace it
		log.G(ctx).WithError(err).Warn("vm from the factory failed; stopping it and booting cold")
		stopVM(ctx, vm)
		if err := s.dropFactoryVMMIDs(); err != nil { // userns.go
			return fmt.Errorf("sandbox %s: %w", s.id, err)
		}
		s.vm, s.vmStart = nil, 0
	}
	// A VM from the factory's cache that failed took the published view with it when
	// the sandbox took its export: an unprivileged VMM needs it before it starts.
	if s.vmmIDs != nil && vmcfg.SharedFS == hypervisor.SharedFS9P && !s.share.Published() {
		if err := s.share.Publish(ctx); err != nil {
			return fmt.Errorf("sandbox %s: %w", s.id, err)
		}
	}
	vm, err := hypervisor.New(s.cfg.Hypervisor, vmcfg)
	if err != nil {
		return fmt.Errorf("sandbox %s: %w", s.id, err)
	}
	if err := vm.Start(ctx); err != nil {
		return fmt.Errorf("sandbox %s: start vm: %w", s.id, err)
	}
	// The saved state names the VMM by pid and start time (persist.Save requires both):
	// a VMM that cannot be identified could never be cleaned up safely.
	vmm, err := procid.Of(vm.Pid())
	if err != nil {
		stopVM(ctx, vm)
		if exitErr := vm.Err(); exitErr != nil { // it died at once: that is the news
			return fmt.Errorf("sandbox %s: vm exited after start: %w", s.id, exitErr)
		}
		return fmt.Errorf("sandbox %s: identify the vm process: %w", s.id, err)
	}
	s.vm, s.vmStart = vm, vmm.StartTime
	log.G(ctx).WithField("pid", vm.Pid()).WithField("elapsed", time.Since(start)).Debug("vm started")
	s.phase(PhaseVMStart, vmStart)
	connectStart := time.Now()
	if err := s.connect(ctx, s.cfg.Timeouts); err != nil {
		stopVM(ctx, vm)
		return err
	}
	s.phase(PhaseAgentConnect, connectStart)
	return nil
}

// warmVM asks cfg.VMSource for a VM and records it (recordVM). It returns nil (logged)
// when there is no source, it has none, or the VM cannot be recorded (then it is stopped).
func (s *Sandbox) warmVM(ctx context.Context, vmcfg hypervisor.Config) (hypervisor.VM, procid.ID) {
	if s.cfg.VMSource == nil {
		return nil, procid.ID{}
	}
	if caps, err := hypervisor.CapabilitiesOf(s.cfg.Hypervisor); len(vmcfg.NICs) > 0 && (err != nil || !caps.NICHotplug) {
		log.G(ctx).Debug("the sandbox has network devices, which a vm from the factory lacks and this hypervisor cannot hot-plug; booting cold")
		s.factory = FactorySkipped
		return nil, procid.ID{}
	}
	begin := time.Now()
	_, span := tracing.Start(ctx, "vm from factory")
	// The factory's VMs have no network devices; the sandbox's go in by hot-plug (plugNICs).
	want := vmcfg
	want.NICs = nil
	vm, err := s.cfg.VMSource.VM(ctx, s.cfg.Hypervisor, want)
	tracing.End(span, err)
	if err != nil {
		log.G(ctx).WithError(err).WithField("elapsed", time.Since(begin)).Info("factory has no vm for this sandbox; booting cold")
		s.factory = FactoryMiss
		return nil, procid.ID{}
	}
	log.G(ctx).WithField("pid", vm.Pid()).WithField("elapsed", time.Since(begin)).Info("vm from the factory")
	vmm, err := recordVM(s.id, s.cfg.Hypervisor, vmcfg.StateDir, s.vmmIDLeaseDir(), vm)
	if err == nil {
		err = s.noteFactoryVMMIDs(vm.Pid()) // userns.go
	}
	if err != nil {
		log.G(ctx).WithError(err).Warn("vm from the factory cannot be recorded; stopping it and booting cold")
		stopVM(ctx, vm)
		if err := s.dropFactoryVMMIDs(); err != nil {
			log.G(ctx).WithError(err).Warn("give back the ids of the factory's vm")
		}
		s.factory = FactoryFailed
		return nil, procid.ID{}
	}
	return vm, vmm
}

// stopVM stops vm, also when ctx is cancelled, and logs a failure.
func stopVM(ctx context.Context, vm hypervisor.VM) {
	cctx, cancel := cleanupContext(ctx)
	defer cancel()
	if err := vm.Stop(cctx); err != nil {
		log.G(ctx).WithError(err).Warn("stop vm")
	}
}

// recordVM saves the VMM's identity (pid and start time) and the directory of the leases
// of the sandbox's VMM ids (leaseDir, empty without) at once: a VM from the cache is not
// this process's child and so does not die with it; if this process dies before Create
// saves the sandbox, Cleanup (`shim delete`) still finds and kills the VM and gives the
// ids back.
func recordVM(id, driver, dir, leaseDir string, vm hypervisor.VM) (procid.ID, error) {
	vmm, err := procid.Of(vm.Pid())
	if err != nil {
		return procid.ID{}, fmt.Errorf("record the factory's vm: %w", err)
	}
	err = persist.Save(dir, &persist.Sandbox{
		ID: id, Created: time.Now().UTC(), Hypervisor: driver, VMPid: vmm.Pid, VMStartTime: vmm.StartTime,
		State: "creating", AgentKind: vm.Agent().Kind, AgentPath: vm.Agent().Path, VMMIDLeaseDir: leaseDir,
	})
	if err != nil {
		return procid.ID{}, fmt.Errorf("record the factory's vm: %w", err)
	}
	return vmm, nil
}

// grow brings a VM from the factory up to the sandbox's size (cfg.VM) and has the agent
// online what was added. Preconditions: s.agent is connected.
func (s *Sandbox) grow(ctx context.Context) error {
	r, ok := s.vm.(hypervisor.Resizer)
	if !ok {
		return nil
	}
	return s.growTo(ctx, r, s.cfg.VM.VCPUs, s.cfg.VM.MemoryMiB, "to the sandbox's size")
}

// plugNICs hot-plugs the sandbox's NICs (att) into a VM from the factory, which has none,
// and gives each guest interface the PCI path the agent waits for it at. A failure leaves
// the NICs plugged so far in the VM, which the caller stops.
// Preconditions: s.vm is the factory's VM, started.
func (s *Sandbox) plugNICs(ctx context.Context, att *network.Attachment) error {
	if len(att.NICs) == 0 {
		return nil
	}
	h, ok := s.vm.(hypervisor.NICHotplugger)
	if !ok {
		return fmt.Errorf("sandbox %s: the vm from the factory cannot hot-plug the sandbox's %d NICs: %w", s.id, len(att.NICs), errdefs.ErrNotImplemented)
	}
	paths := make([]string, len(att.NICs))
	for i, n := range att.NICs {
		path, err := h.AttachNIC(ctx, hvNIC(n))
		if err != nil {
			return fmt.Errorf("sandbox %s: hot-plug NIC %s into the vm from the factory: %w", s.id, n.ID, err)
		}
		paths[i] = path
	}
	for i, path := range paths {
		att.Interfaces[i].PciPath = path
	}
	log.G(ctx).WithField("nics", len(paths)).Debug("nics hot-plugged into the vm from the factory")
	return nil
}
