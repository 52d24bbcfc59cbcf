package sandbox

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/oci"
)

// fit grows the VM to the size its containers' limits ask for (oci.ComputeSizing over
// Config.Limits) when Config.Resize is set, and has the agent online what was added. trim
// takes away vCPUs; memory is never taken back: hot-plugged memory stays until the
// sandbox ends.
//
// Preconditions: s.mu is not held. fit serialises itself with resizeMu.
func (s *Sandbox) fit(ctx context.Context) error {
	if !s.cfg.Resize {
		return nil
	}
	s.resizeMu.Lock()
	defer s.resizeMu.Unlock()
	want := s.wantSize()

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

// wantSize is the sizing formula over the containers' limits.
func (s *Sandbox) wantSize() oci.Sizing {
	s.mu.Lock()
	workloads := make([]oci.Resources, 0, len(s.containers))
	for _, c := range s.containers {
		workloads = append(workloads, c.resources)
	}
	s.mu.Unlock()
	return oci.ComputeSizing(s.cfg.Limits, workloads...)
}

// trim removes hot-plugged vCPUs the containers' limits no longer need (the sizing formula,
// as fit) when Config.Resize is set and the driver can (hypervisor.CPUShrinker).
//
// Preconditions: s.mu is not held. trim serialises itself with resizeMu.
func (s *Sandbox) trim(ctx context.Context) error {
	if !s.cfg.Resize {
		return nil
	}
	r, rok := s.vm.(hypervisor.Resizer)
	sh, sok := s.vm.(hypervisor.CPUShrinker)
	if !rok || !sok {
		return nil
	}
	s.resizeMu.Lock()
	defer s.resizeMu.Unlock()
	return s.explain(s.shrinkCPUs(ctx, r, sh, s.wantSize().VCPUs))
}

// shrinkCPUs removes hot-plugged vCPUs down to vcpus: the agent offlines the guest CPUs
// first, then the driver unplugs them. When the unplug fails, the agent onlines again what
// is still plugged. Errors are not explained (explain). Preconditions: s.agent is
// connected; resizeMu is held.
func (s *Sandbox) shrinkCPUs(ctx context.Context, r hypervisor.Resizer, sh hypervisor.CPUShrinker, vcpus uint32) error {
	cpus, _ := r.Size()
	if vcpus >= cpus {
		return nil
	}
	if err := sh.CanShrinkCPUs(); err != nil {
		log.G(ctx).WithError(err).WithField("vcpus", cpus).WithField("want_vcpus", vcpus).Info("vcpus not removed")
		return nil
	}
	begin := time.Now()
	places, err := sh.CPUPlaces(ctx, vcpus)
	if errors.Is(err, errdefs.ErrFailedPrecondition) {
		// A paused VM cannot release vCPUs: they stay until a later update while it runs.
		log.G(ctx).WithError(err).Info("vcpus not removed")
		return nil
	}
	if err != nil || len(places) == 0 {
		return err //nolint:wrapcheck // the driver names the VM
	}
	req := make([]*agentv1.CPUPlace, 0, len(places))
	for _, p := range places {
		req = append(req, &agentv1.CPUPlace{SocketId: p.Socket, CoreId: p.Core})
	}
	offlined, err := s.agent.OfflineCPUs(ctx, req)
	if err != nil {
		return fmt.Errorf("sandbox %s: offline vcpus before the unplug: %w", s.id, err)
	}
	if err := sh.ShrinkCPUs(ctx, vcpus); err != nil {
		if oerr := s.agent.OnlineCPUMem(ctx, &agentv1.OnlineCPUMemRequest{CpuOnly: true}); oerr != nil {
			log.G(ctx).WithError(oerr).Warn("online the vcpus that stay plugged after a failed unplug")
		}
		return fmt.Errorf("sandbox %s: shrink vm to %d vCPUs: %w", s.id, vcpus, err)
	}
	newCPUs, _ := r.Size()
	log.G(ctx).WithField("vcpus", newCPUs).WithField("guest_cpus_offlined", offlined).WithField("elapsed", time.Since(begin)).
		Debug("vm vcpus shrunk for its containers' limits")
	return nil
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
