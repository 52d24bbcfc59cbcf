package sandbox

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/log"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/persist"
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

// startVM starts the sandbox's VM: from cfg.VMSource when it has one, else a cold boot.
// warm tells which.
func startVM(ctx context.Context, cfg Config, vmcfg hypervisor.Config) (vm hypervisor.VM, warm bool, err error) {
	if cfg.VMSource != nil {
		begin := time.Now()
		vm, err := cfg.VMSource.VM(ctx, cfg.Hypervisor, vmcfg)
		if err == nil {
			log.G(ctx).WithField("pid", vm.Pid()).WithField("elapsed", time.Since(begin)).Info("vm from the factory")
			recordVM(ctx, cfg.ID, vmcfg.StateDir, vm)
			return vm, true, nil
		}
		log.G(ctx).WithError(err).WithField("elapsed", time.Since(begin)).Info("factory has no vm for this sandbox; booting cold")
	}
	vm, err = hypervisor.New(cfg.Hypervisor, vmcfg)
	if err != nil {
		return nil, false, fmt.Errorf("sandbox %s: %w", cfg.ID, err)
	}
	if err := vm.Start(ctx); err != nil {
		return nil, false, fmt.Errorf("sandbox %s: start vm: %w", cfg.ID, err)
	}
	return vm, false, nil
}

// recordVM saves the VMM's pid and start time at once: a VM from the cache is not this
// process's child and so does not die with it; if this process dies before Create saves
// the sandbox, Cleanup (`shim delete`) still finds and kills the VM.
func recordVM(ctx context.Context, id, dir string, vm hypervisor.VM) {
	start, err := hypervisor.ProcessStartTime(vm.Pid())
	if err == nil {
		err = persist.Save(dir, &persist.Sandbox{
			ID: id, Created: time.Now().UTC(), VMPid: vm.Pid(), VMStartTime: start,
			State: "creating", AgentKind: vm.Agent().Kind, AgentPath: vm.Agent().Path,
		})
	}
	if err != nil {
		log.G(ctx).WithError(err).Warn("record the factory's vm")
	}
}

// grow brings a VM from the factory up to the sandbox's size (cfg.VM) and has the agent
// online what was added.
func (s *Sandbox) grow(ctx context.Context) error {
	r, ok := s.vm.(hypervisor.Resizer)
	if !ok {
		return nil
	}
	cpus, mem := r.Size()
	wantCPUs, wantMem := max(s.cfg.VM.VCPUs, cpus), max(s.cfg.VM.MemoryMiB, mem)
	if wantCPUs == cpus && wantMem == mem {
		return nil
	}
	begin := time.Now()
	if err := r.Grow(ctx, wantCPUs, wantMem); err != nil {
		return fmt.Errorf("grow vm to %d vCPUs and %d MiB: %w", wantCPUs, wantMem, err)
	}
	newCPUs, newMem := r.Size()
	if err := s.agent.OnlineCPUMem(ctx, &agentv1.OnlineCPUMemRequest{
		NbCpus: newCPUs - cpus, Wait: newCPUs > cpus, CpuOnly: newMem == mem,
	}); err != nil {
		return fmt.Errorf("online hot-plugged resources: %w", err)
	}
	log.G(ctx).WithField("vcpus", newCPUs).WithField("memory_mib", newMem).WithField("elapsed", time.Since(begin)).
		Debug("vm grown")
	return nil
}
