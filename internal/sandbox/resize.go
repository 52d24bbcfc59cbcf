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
// takes away the vCPUs and memory the limits no longer need.
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

// trim removes hot-plugged vCPUs and memory the containers' limits no longer need (the
// sizing formula, as fit) when Config.Resize is set and the driver can
// (hypervisor.CPUShrinker, hypervisor.MemoryShrinker). Memory the guest cannot give up
// stays and is logged (shrinkMemory), it is no error.
//
// Preconditions: s.mu is not held. trim serialises itself with resizeMu.
func (s *Sandbox) trim(ctx context.Context) error {
	if !s.cfg.Resize {
		return nil
	}
	r, ok := s.vm.(hypervisor.Resizer)
	if !ok {
		return nil
	}
	s.resizeMu.Lock()
	defer s.resizeMu.Unlock()
	want := s.wantSize()
	if msh, ok := s.vm.(hypervisor.MemoryShrinker); ok {
		s.shrinkMemory(ctx, r, msh, want.MemoryMiB)
	}
	if sh, ok := s.vm.(hypervisor.CPUShrinker); ok {
		return s.explain(s.shrinkCPUs(ctx, r, sh, want.VCPUs))
	}
	return nil
}

// memoryOfflineTimeout bounds how long the guest may take to offline the memory of the
// DIMMs to remove (migrating the pages in use there to the memory that stays).
const memoryOfflineTimeout = 20 * time.Second

// shrinkMemory removes hot-plugged memory down to memoryMiB, in the units it was added
// (whole DIMMs, never below memoryMiB; when a kept DIMM is larger than needed, a smaller
// one is plugged first to take its place, so the VM ends at memoryMiB rounded up to the
// DIMM unit). When the guest cannot give the memory up or the unplug fails, the VM keeps
// it (and loses again the DIMM plugged to take another's place), the agent onlines again
// what is still plugged, and the reason is logged: the container's limits stand, and a
// later update tries again. Preconditions: s.agent is connected; resizeMu is held.
func (s *Sandbox) shrinkMemory(ctx context.Context, r hypervisor.Resizer, sh hypervisor.MemoryShrinker, memoryMiB uint32) {
	cpus, mem := r.Size()
	if memoryMiB >= mem {
		return
	}
	logger := log.G(ctx).WithField("memory_mib", mem).WithField("want_memory_mib", memoryMiB)
	begin := time.Now()
	replaced := false
	if add := sh.ReplacementMiB(memoryMiB); add > 0 {
		if err := s.growTo(ctx, r, cpus, mem+add, "to take the place of a larger dimm"); err != nil {
			logger.WithError(err).Warn("no smaller dimm plugged to take the place of a larger one")
		} else {
			replaced = true
		}
	}
	blocks, err := s.removeMemory(ctx, r, sh, memoryMiB)
	if err != nil {
		logger.WithError(err).Warn("memory not removed; it stays until a later update")
		if replaced {
			if _, err := s.removeMemory(ctx, r, sh, mem); err != nil {
				logger.WithError(err).Warn("the dimm plugged to take another's place stays")
			}
		}
		return
	}
	_, newMem := r.Size()
	logger.WithField("memory_mib_now", newMem).WithField("guest_blocks_offlined", blocks).WithField("elapsed", time.Since(begin)).
		Info("vm memory shrunk for its containers' limits")
}

// removeMemory removes the DIMMs the driver names for memoryMiB (MemoryRanges): the agent
// offlines their memory blocks (after checking that the guest can spare them), then the
// driver unplugs them; when the unplug fails, the agent onlines again what is still
// plugged. It returns how many blocks the guest offlined. Preconditions: s.agent is
// connected; resizeMu is held.
func (s *Sandbox) removeMemory(ctx context.Context, r hypervisor.Resizer, sh hypervisor.MemoryShrinker, memoryMiB uint32) (int, error) {
	ranges, err := sh.MemoryRanges(ctx, memoryMiB)
	if err != nil || len(ranges) == 0 {
		return 0, err //nolint:wrapcheck // the driver names the VM
	}
	req := make([]*agentv1.MemoryRange, 0, len(ranges))
	for _, rg := range ranges {
		req = append(req, &agentv1.MemoryRange{Addr: rg.Addr, Size: rg.Size})
	}
	blocks, err := s.agent.OfflineMemory(ctx, req, memoryOfflineTimeout)
	if err != nil {
		return 0, fmt.Errorf("sandbox %s: the guest did not give up its memory: %w", s.id, err)
	}
	if err := sh.ShrinkMemory(ctx, memoryMiB); err != nil {
		// What was not unplugged goes back into use.
		if oerr := s.agent.OnlineCPUMem(ctx, &agentv1.OnlineCPUMemRequest{}); oerr != nil {
			log.G(ctx).WithError(oerr).Warn("online the memory that stays plugged after a failed unplug")
		}
		_, left := r.Size()
		return 0, fmt.Errorf("sandbox %s: unplug memory (the vm keeps %d MiB): %w", s.id, left, s.explain(err))
	}
	return len(blocks), nil
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
