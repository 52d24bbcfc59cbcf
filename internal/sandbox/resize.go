package sandbox

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/oci"
)

// fit grows the VM to the size its containers' limits ask for (oci.ComputeSizing over
// Config.Limits) when Config.Resize is set, and has the agent online what was added. It
// never shrinks the VM: hot-plugged vCPUs and memory stay until the sandbox ends.
//
// Preconditions: s.mu is not held. fit serialises itself with resizeMu.
func (s *Sandbox) fit(ctx context.Context) error {
	if !s.cfg.Resize {
		return nil
	}
	s.resizeMu.Lock()
	defer s.resizeMu.Unlock()
	s.mu.Lock()
	workloads := make([]oci.Resources, 0, len(s.containers))
	for _, c := range s.containers {
		workloads = append(workloads, c.resources)
	}
	s.mu.Unlock()
	want := oci.ComputeSizing(s.cfg.Limits, workloads...)

	r, ok := s.vm.(hypervisor.Resizer)
	if !ok {
		if want.VCPUs > s.cfg.VM.VCPUs || want.MemoryMiB > s.cfg.VM.MemoryMiB {
			return fmt.Errorf("sandbox %s: the containers' limits need %d vCPUs and %d MiB, and the %s driver cannot resize a running VM "+
				"(set runtime.static_sandbox_resource_mgmt): %w", s.id, want.VCPUs, want.MemoryMiB, s.cfg.Hypervisor, errdefs.ErrNotImplemented)
		}
		return nil
	}
	return s.explain(s.growTo(ctx, r, want.VCPUs, want.MemoryMiB, "for its containers' limits"))
}

// growTo hot-plugs vCPUs and memory up to the totals given (it never removes any) and has
// the agent online what was added; why says what the size is for, in logs and errors.
// Errors are not explained (explain). Preconditions: s.agent is connected.
func (s *Sandbox) growTo(ctx context.Context, r hypervisor.Resizer, vcpus, memoryMiB uint32, why string) error {
	cpus, mem := r.Size()
	wantCPUs, wantMem := max(vcpus, cpus), max(memoryMiB, mem)
	if wantCPUs == cpus && wantMem == mem {
		return nil
	}
	begin := time.Now()
	if err := r.Grow(ctx, wantCPUs, wantMem); err != nil {
		return fmt.Errorf("sandbox %s: grow vm to %d vCPUs and %d MiB %s: %w", s.id, wantCPUs, wantMem, why, err)
	}
	newCPUs, newMem := r.Size()
	if err := s.agent.OnlineCPUMem(ctx, &agentv1.OnlineCPUMemRequest{
		NbCpus: newCPUs - cpus, Wait: newCPUs > cpus, CpuOnly: newMem == mem,
	}); err != nil {
		return fmt.Errorf("sandbox %s: online hot-plugged resources: %w", s.id, err)
	}
	log.G(ctx).WithField("vcpus", newCPUs).WithField("memory_mib", newMem).WithField("elapsed", time.Since(begin)).
		Debug("vm grown " + why)
	return nil
}
