package qemu

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/hypervisor/qemu/qmp"
)

// Shrinking a running VM's memory (hypervisor.MemoryShrinker): the DIMMs Grow hot-plugged
// are removed largest first, each with device_del, which asks the guest to eject it (ACPI
// memory hotplug), and the DEVICE_DELETED event once the guest let it go; object-del of
// its backend then gives the memory back to the host. The guest must have offlined the
// DIMM's memory blocks before (the agent's OfflineMemory over the ranges MemoryRanges
// gives): the guest kernel's eject would otherwise offline them itself, from a kernel
// thread that nothing interrupts while it retries migrating pages. A guest that cannot
// release a DIMM answers the eject with an ACPI _OST status other than success; the DIMM
// then stays, counted by QEMU and by Size alike, and a later ShrinkMemory can try again.
// This works under TCG.

var _ hypervisor.MemoryShrinker = (*VM)(nil)

const (
	// dimmDevicePrefix starts the id of every DIMM Grow adds, memBackendPrefix the id of
	// its memory backend object.
	dimmDevicePrefix = "vessel-dimm-"
	memBackendPrefix = "vessel-mem-"
)

// removableDIMMs are the hot-plugged DIMMs to remove so that the VM keeps at least
// memoryMiB, largest first (newest first among equals): each that can go without the VM
// going below memoryMiB goes.
func (v *VM) removableDIMMs(memoryMiB uint32) []hotDIMM {
	v.mu.Lock()
	defer v.mu.Unlock()
	out, _ := v.planShrink(memoryMiB)
	return out
}

// planShrink splits the hot-plugged DIMMs into those to remove for memoryMiB
// (removableDIMMs) and those to keep.
//
// Preconditions: v.mu is held.
func (v *VM) planShrink(memoryMiB uint32) (remove, keep []hotDIMM) {
	cur := v.cfg.MemoryMiB + v.hot.memoryMiB
	order := slices.Clone(v.hot.dimms)
	slices.Reverse(order)
	slices.SortStableFunc(order, func(a, b hotDIMM) int { return cmp.Compare(b.sizeMiB, a.sizeMiB) })
	for _, d := range order {
		if cur-d.sizeMiB < memoryMiB {
			keep = append(keep, d)
			continue
		}
		cur -= d.sizeMiB
		remove = append(remove, d)
	}
	return remove, keep
}

// ReplacementMiB is the size of a DIMM to plug before a shrink to memoryMiB so that the
// shrink can leave the VM with memoryMiB rounded up to the DIMM unit instead of more:
// with it plugged, a kept DIMM larger than needed can go. 0 when the shrink gets there
// without one, or when no slot or no room under the maximum is left for it.
func (v *VM) ReplacementMiB(memoryMiB uint32) uint32 {
	v.mu.Lock()
	defer v.mu.Unlock()
	boot := v.cfg.MemoryMiB
	if memoryMiB < boot {
		memoryMiB = boot
	}
	target := boot + (memoryMiB-boot+dimmAlignMiB-1)/dimmAlignMiB*dimmAlignMiB
	remove, keep := v.planShrink(target)
	after := boot + v.hot.memoryMiB
	for _, d := range remove {
		after -= d.sizeMiB
	}
	if after <= target || len(keep) == 0 {
		return 0
	}
	// Every kept DIMM is one whose removal goes below target: replacing the smallest of
	// them by one of the size missing then costs the least memory meanwhile.
	smallest := slices.MinFunc(keep, func(a, b hotDIMM) int { return cmp.Compare(a.sizeMiB, b.sizeMiB) })
	add := target - (after - smallest.sizeMiB)
	slots := v.cfg.MemorySlots
	if slots == 0 {
		slots = defaultMemorySlots // as commandLine
	}
	if uint32(len(v.hot.dimms)) >= slots || boot+v.hot.memoryMiB+add > max(v.cfg.MaxMemoryMiB, boot) {
		return 0
	}
	return add
}

// MemoryRanges returns where the DIMMs ShrinkMemory(memoryMiB) would remove sit in guest
// memory, in the order it removes them, as QEMU's list of memory devices has them.
func (v *VM) MemoryRanges(ctx context.Context, memoryMiB uint32) ([]hypervisor.MemoryRange, error) {
	v.opMu.Lock()
	defer v.opMu.Unlock()
	c, err := v.running("list memory devices", phaseRunning)
	if err != nil {
		return nil, err
	}
	dimms := v.removableDIMMs(memoryMiB)
	if len(dimms) == 0 {
		return nil, nil
	}
	devs, err := c.QueryMemoryDevices(ctx)
	if err != nil {
		return nil, fmt.Errorf("qemu %s: list memory devices: %w", v.cfg.ID, err)
	}
	byID := make(map[string]qmp.MemoryDevice, len(devs))
	for _, d := range devs {
		byID[d.Data.ID] = d
	}
	ranges := make([]hypervisor.MemoryRange, 0, len(dimms))
	for _, d := range dimms {
		dev, ok := byID[d.dev]
		if !ok {
			return nil, fmt.Errorf("qemu %s: dimm %s is not among the vm's memory devices: %w", v.cfg.ID, d.dev, errdefs.ErrNotFound)
		}
		if dev.Data.Size != uint64(d.sizeMiB)<<20 {
			return nil, fmt.Errorf("qemu %s: dimm %s has %d bytes, %d MiB were plugged: %w", v.cfg.ID, d.dev, dev.Data.Size, d.sizeMiB, errdefs.ErrUnknown)
		}
		ranges = append(ranges, hypervisor.MemoryRange{Addr: dev.Data.Addr, Size: dev.Data.Size})
	}
	return ranges, nil
}

// ShrinkMemory unplugs hot-plugged DIMMs, largest first (removableDIMMs), so that the VM
// keeps at least memoryMiB (never below the boot size): device_del and the guest's release
// (DEVICE_DELETED) of each within hotplugAckTimeout, then object-del of its backend. The
// VM must be running: a paused guest cannot answer.
func (v *VM) ShrinkMemory(ctx context.Context, memoryMiB uint32) error {
	v.opMu.Lock()
	defer v.opMu.Unlock()
	c, err := v.running("shrink memory", phaseRunning)
	if err != nil {
		return err
	}
	v.deleteStaleBackends(ctx, c)
	for _, d := range v.removableDIMMs(memoryMiB) {
		if err := v.unplugDIMM(ctx, c, d.dev); err != nil {
			return fmt.Errorf("qemu %s: unplug dimm %s (%d MiB): %w", v.cfg.ID, d.dev, d.sizeMiB, err)
		}
		v.mu.Lock()
		v.forgetDIMM(d.dev)
		v.mu.Unlock()
		if err := c.ObjectDel(ctx, d.mem); err != nil {
			// The guest has let the memory go: the host gets it back at the next try.
			log.G(ctx).WithError(err).WithField("backend", d.mem).Warn("delete the memory backend of an unplugged dimm")
			v.mu.Lock()
			v.hot.staleBackends = append(v.hot.staleBackends, d.mem)
			v.mu.Unlock()
		}
	}
	return nil
}

// forgetDIMM takes DIMM dev out of the hot-plugged memory; it reports whether it was there.
//
// Preconditions: v.mu is held.
func (v *VM) forgetDIMM(dev string) (hotDIMM, bool) {
	for i, d := range v.hot.dimms {
		if d.dev == dev {
			v.hot.dimms = append(v.hot.dimms[:i], v.hot.dimms[i+1:]...)
			v.hot.memoryMiB -= d.sizeMiB
			return d, true
		}
	}
	return hotDIMM{}, false
}

// dimmReleased accounts for DIMM dev, which the guest released while nobody waited (an
// unplug that gave up before the guest's answer): it no longer counts, and its backend is
// deleted at the next Grow or ShrinkMemory.
//
// Preconditions: v.mu is held.
func (v *VM) dimmReleased(dev string) {
	if d, ok := v.forgetDIMM(dev); ok {
		v.hot.staleBackends = append(v.hot.staleBackends, d.mem)
	}
}

// deleteStaleBackends deletes the backends of DIMMs already unplugged; one QEMU does not
// know any more is forgotten, one it refuses to delete is kept for the next try.
func (v *VM) deleteStaleBackends(ctx context.Context, c *qmp.Client) {
	v.mu.Lock()
	stale := v.hot.staleBackends
	v.hot.staleBackends = nil
	v.mu.Unlock()
	var keep []string
	for _, mem := range stale {
		err := c.ObjectDel(ctx, mem)
		var qe *qmp.Error
		gone := errors.As(err, &qe) && strings.Contains(qe.Desc, "not found") // QEMU: "object '…' not found"
		if err != nil && !gone {
			log.G(ctx).WithError(err).WithField("backend", mem).Warn("delete the memory backend of an unplugged dimm")
			keep = append(keep, mem)
		}
	}
	v.mu.Lock()
	v.hot.staleBackends = append(v.hot.staleBackends, keep...)
	v.mu.Unlock()
}

// unplugDIMM runs device_del for DIMM id and waits, within hotplugAckTimeout, for its
// DEVICE_DELETED; a refusal the guest answers with (ACPI _OST, status other than success
// or in progress) ends the wait with that status. A DIMM QEMU does not know is gone
// already.
func (v *VM) unplugDIMM(ctx context.Context, c *qmp.Client, id string) error {
	events, unwatch := v.watchDevice(id)
	defer unwatch()
	gone, _, stop := v.expectDeleted(id)
	defer stop()
	if err := c.DeviceDel(ctx, id); err != nil {
		var qe *qmp.Error
		if errors.As(err, &qe) && qe.Class == "DeviceNotFound" {
			return nil
		}
		return err //nolint:wrapcheck // the caller names the dimm
	}
	return v.awaitRelease(ctx, events, gone, "dimm")
}

// awaitRelease waits, within hotplugAckTimeout, for the device a device_del asked the
// guest to eject to go (gone closes on its DEVICE_DELETED), and fails on the guest's
// refusal in an ACPI _OST answer on events (status other than success or in progress).
// what names the device's kind in errors.
func (v *VM) awaitRelease(ctx context.Context, events <-chan qmp.Event, gone <-chan struct{}, what string) error {
	timer := time.NewTimer(hotplugAckTimeout)
	defer timer.Stop()
	for {
		select {
		case <-gone:
			return nil
		case ev := <-events:
			var d struct {
				Info struct {
					Source int `json:"source"`
					Status int `json:"status"`
				} `json:"info"`
			}
			// 0x84: the eject is in progress; the guest answers again when done.
			if json.Unmarshal(ev.Data, &d) == nil && d.Info.Status != 0 && d.Info.Status != ostEjectInProgress {
				return fmt.Errorf("the guest refused the eject: ACPI _OST source %#x status %#x: %w", d.Info.Source, d.Info.Status, errdefs.ErrFailedPrecondition)
			}
		case <-v.done:
			return errors.New("qemu exited")
		case <-timer.C:
			return fmt.Errorf("the guest did not release the %s within %s: %w", what, hotplugAckTimeout, errdefs.ErrUnavailable)
		case <-ctx.Done():
			return fmt.Errorf("the guest did not release the %s: %w", what, ctx.Err())
		}
	}
}
