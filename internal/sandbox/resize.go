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

// trim takes away the vCPUs and memory the containers' limits no longer need (the sizing
// formula, as fit) when Config.Resize is set and the driver is a hypervisor.CPUShrinker or
// hypervisor.MemoryShrinker: hot-plugged vCPUs are removed, or parked offline in the guest
// where the driver cannot remove them (shrinkCPUs); hot-plugged memory is removed. Memory
// the guest cannot give up stays and is logged (shrinkMemory), it is no error.
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
	_, mem := r.Size()
	if memoryMiB >= mem {
		return
	}
	logger := log.G(ctx).WithField("memory_mib", mem).WithField("want_memory_mib", memoryMiB)
	begin := time.Now()
	replaced := false
	if add := sh.ReplacementMiB(memoryMiB); add > 0 {
		if err := s.growTo(ctx, r, s.vcpusInUse(r), mem+add, "to take the place of a larger dimm"); err != nil {
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
		if oerr := s.onlineCPUMem(ctx, &agentv1.OnlineCPUMemRequest{}); oerr != nil {
			log.G(ctx).WithError(oerr).Warn("online the memory that stays plugged after a failed unplug")
		}
		_, left := r.Size()
		return 0, fmt.Errorf("sandbox %s: unplug memory (the vm keeps %d MiB): %w", s.id, left, s.explain(err))
	}
	return len(blocks), nil
}

// shrinkCPUs takes hot-plugged vCPUs out of the guest's use down to vcpus, newest first
// (never below the boot size): the agent offlines the guest CPUs at their places, then the
// driver unplugs them. When the driver cannot remove vCPUs (CanShrinkCPUs), they stay
// plugged and offline, parked, until a later grow onlines them again (growTo). When the
// unplug fails, the agent onlines again what is still plugged. A paused VM keeps its vCPUs.
// Errors are not explained (explain). Preconditions: s.agent is connected; resizeMu is
// held.
func (s *Sandbox) shrinkCPUs(ctx context.Context, r hypervisor.Resizer, sh hypervisor.CPUShrinker, vcpus uint32) error {
	plugged, _ := r.Size()
	inUse := s.vcpusInUse(r)
	if vcpus >= inUse {
		return nil
	}
	logger := log.G(ctx).WithField("vcpus", inUse).WithField("want_vcpus", vcpus)
	cannot := sh.CanShrinkCPUs()
	begin := time.Now()
	places, err := sh.CPUPlaces(ctx, vcpus)
	if errors.Is(err, errdefs.ErrFailedPrecondition) {
		// A paused VM cannot release vCPUs: they stay until a later update while it runs.
		logger.WithError(err).Info("vcpus not removed")
		return nil
	}
	if err != nil || len(places) == 0 {
		return err //nolint:wrapcheck // the driver names the VM
	}
	offlined, err := s.agent.OfflineCPUs(ctx, agentPlaces(places))
	if err != nil {
		return fmt.Errorf("sandbox %s: offline vcpus: %w", s.id, err)
	}
	if cannot != nil {
		s.parked = places
		logger.WithField("vcpus_plugged", plugged).WithField("vcpus_now", s.vcpusInUse(r)).WithField("parked", places).
			WithField("guest_cpus_offlined", offlined).WithField("elapsed", time.Since(begin)).WithField("reason", cannot.Error()).
			Info("vcpus parked offline in the guest for its containers' limits: the driver cannot remove them")
		return nil
	}
	if err := sh.ShrinkCPUs(ctx, vcpus); err != nil {
		if oerr := s.onlineCPUMem(ctx, &agentv1.OnlineCPUMemRequest{CpuOnly: true}); oerr != nil {
			logger.WithError(oerr).Warn("online the vcpus that stay plugged after a failed unplug")
		}
		return fmt.Errorf("sandbox %s: shrink vm to %d vCPUs: %w", s.id, vcpus, err)
	}
	// The unplug removed every vCPU above vcpus, the parked ones (the newest) among them.
	s.parked = nil
	logger.WithField("vcpus_now", s.vcpusInUse(r)).WithField("guest_cpus_offlined", offlined).WithField("elapsed", time.Since(begin)).
		Info("vm vcpus shrunk for its containers' limits")
	return nil
}

// vcpusInUse is how many vCPUs the guest uses: those plugged less the parked ones.
// Preconditions: resizeMu is held.
func (s *Sandbox) vcpusInUse(r hypervisor.Resizer) uint32 {
	plugged, _ := r.Size()
	return plugged - min(plugged, uint32(len(s.parked)))
}

// agentPlaces converts vCPU places to the agent's form.
func agentPlaces(places []hypervisor.CPUPlace) []*agentv1.CPUPlace {
	out := make([]*agentv1.CPUPlace, 0, len(places))
	for _, p := range places {
		out = append(out, &agentv1.CPUPlace{SocketId: p.Socket, CoreId: p.Core})
	}
	return out
}

// onlineCPUMem has the agent online what req asks. The agent onlines offline CPUs
// lowest-numbered first and cannot pick them by place, so it may online parked vCPUs among
// them: those go offline again. Preconditions: s.agent is connected; resizeMu is held.
func (s *Sandbox) onlineCPUMem(ctx context.Context, req *agentv1.OnlineCPUMemRequest) error {
	if err := s.agent.OnlineCPUMem(ctx, req); err != nil {
		return err //nolint:wrapcheck // the callers say what was onlined
	}
	if len(s.parked) == 0 {
		return nil
	}
	if _, err := s.agent.OfflineCPUs(ctx, agentPlaces(s.parked)); err != nil {
		// What is offline now is not known: all back in use is a state that is.
		s.parked = nil
		if oerr := s.agent.OnlineCPUMem(ctx, &agentv1.OnlineCPUMemRequest{CpuOnly: true}); oerr != nil {
			return fmt.Errorf("sandbox %s: offline the parked vcpus again: %w (and online them all: %w)", s.id, err, oerr)
		}
		log.G(ctx).WithError(err).Warn("the parked vcpus are back in use: they could not be offlined again")
	}
	return nil
}

// unpark puts parked vCPUs back into the guest's use, the oldest first, up to vcpus in
// use; the newest stay parked when vcpus is below the plugged count. Preconditions:
// s.agent is connected; resizeMu is held.
func (s *Sandbox) unpark(ctx context.Context, r hypervisor.Resizer, vcpus uint32) error {
	plugged, _ := r.Size()
	keep := 0
	if vcpus < plugged {
		keep = min(int(plugged-vcpus), len(s.parked))
	}
	back := s.parked[keep:]
	if len(back) == 0 {
		return nil
	}
	s.parked = s.parked[:keep]
	if err := s.onlineCPUMem(ctx, &agentv1.OnlineCPUMemRequest{CpuOnly: true}); err != nil {
		// Onlining again by place is idempotent: a later grow retries it.
		s.parked = append(s.parked, back...)
		return fmt.Errorf("sandbox %s: online parked vcpus: %w", s.id, err)
	}
	log.G(ctx).WithField("unparked", back).WithField("parked", s.parked).WithField("vcpus_now", s.vcpusInUse(r)).
		Info("parked vcpus back in use")
	return nil
}

// growTo brings the vCPUs in use and the memory up to the totals given (it never takes any
// away): parked vCPUs are onlined first, then vCPUs and memory are hot-plugged and the agent
// onlines what was added; why says what the size is for, in logs and errors. Errors are not
// explained (explain). Preconditions: s.agent is connected; resizeMu is held, or the
// sandbox is not shared yet.
func (s *Sandbox) growTo(ctx context.Context, r hypervisor.Resizer, vcpus, memoryMiB uint32, why string) error {
	inUse := s.vcpusInUse(r)
	plugged, mem := r.Size()
	wantCPUs, wantMem := max(vcpus, inUse), max(memoryMiB, mem)
	if wantCPUs == inUse && wantMem == mem {
		return nil
	}
	begin := time.Now()
	if wantCPUs > inUse {
		if err := s.unpark(ctx, r, wantCPUs); err != nil {
			return err
		}
	}
	if wantCPUs <= plugged && wantMem == mem {
		log.G(ctx).WithField("vcpus", s.vcpusInUse(r)).WithField("memory_mib", mem).WithField("elapsed", time.Since(begin)).
			Debug("vm grown " + why)
		return nil
	}
	plugCPUs := max(wantCPUs, plugged)
	if err := r.Grow(ctx, plugCPUs, wantMem); err != nil {
		return fmt.Errorf("sandbox %s: grow vm to %d vCPUs and %d MiB %s: %w", s.id, plugCPUs, wantMem, why, err)
	}
	newCPUs, newMem := r.Size()
	if err := s.onlineCPUMem(ctx, &agentv1.OnlineCPUMemRequest{
		NbCpus: newCPUs - plugged, Wait: newCPUs > plugged, CpuOnly: newMem == mem,
	}); err != nil {
		return fmt.Errorf("sandbox %s: online hot-plugged resources: %w", s.id, err)
	}
	log.G(ctx).WithField("vcpus", s.vcpusInUse(r)).WithField("memory_mib", newMem).WithField("elapsed", time.Since(begin)).
		Debug("vm grown " + why)
	return nil
}
