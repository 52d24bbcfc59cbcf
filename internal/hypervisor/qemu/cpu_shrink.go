package qemu

import (
	"context"
	"errors"
	"fmt"

	"github.com/containerd/errdefs"

	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/hypervisor/qemu/qmp"
)

// Shrinking a running VM's vCPUs (hypervisor.CPUShrinker): the vCPUs Grow hot-plugged are
// removed newest first, each with device_del, which asks the guest to eject it (ACPI CPU
// hotplug), and the DEVICE_DELETED event once the guest let it go. The guest must have
// offlined those CPUs before (the agent's OfflineCPUs at the places CPUPlaces gives).
// Memory is removed in mem_shrink.go.
//
// Only under KVM: with QEMU 7.2's TCG, removing a vCPU leaves the guest's remaining vCPUs
// without timer interrupts (multi-threaded TCG: RCU stalls, the agent stops answering) or
// aborts QEMU (single-threaded TCG: "qemu_thread_join: Resource deadlock avoided"), so
// CanShrinkCPUs refuses it. CPUPlaces does not depend on the unplug and answers under TCG
// too: the sandbox then keeps those vCPUs plugged and offline in the guest.

var _ hypervisor.CPUShrinker = (*VM)(nil)

// peripheralPath is where QEMU keeps a device added with an id.
const peripheralPath = "/machine/peripheral/"

// cpuDevicePrefix starts the id of every vCPU Grow adds.
const cpuDevicePrefix = "vessel-cpu-"

// CanShrinkCPUs says why the VM cannot remove vCPUs, nil when it can: only a VM this
// process started under KVM can.
func (v *VM) CanShrinkCPUs() error {
	v.mu.Lock()
	accel := v.accel
	v.mu.Unlock()
	switch accel {
	case hypervisor.AccelKVM:
		return nil
	case hypervisor.AccelTCG:
		return fmt.Errorf("qemu %s: vcpu hot-unplug is not done under TCG: QEMU 7.2 stalls the guest's remaining vcpus after one is removed; the vcpus stay plugged until the sandbox ends: %w",
			v.cfg.ID, errdefs.ErrNotImplemented)
	default:
		return fmt.Errorf("qemu %s: vcpu hot-unplug needs a vm this process started under KVM: %w", v.cfg.ID, errdefs.ErrNotImplemented)
	}
}

// removableCPUs are the device ids of the hot-plugged vCPUs to remove to get down to vcpus,
// newest first (Grow names them vessel-cpu-<count before the add>).
func (v *VM) removableCPUs(vcpus uint32) []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	cur := v.cfg.VCPUs + v.hot.vcpus
	keep := max(vcpus, v.cfg.VCPUs)
	var ids []string
	for n := cur; n > keep; n-- {
		ids = append(ids, fmt.Sprintf("%s%d", cpuDevicePrefix, n-1))
	}
	return ids
}

// CPUPlaces returns the socket and core of each vCPU ShrinkCPUs(vcpus) would remove,
// newest first, from QEMU's list of CPU slots.
func (v *VM) CPUPlaces(ctx context.Context, vcpus uint32) ([]hypervisor.CPUPlace, error) {
	v.opMu.Lock()
	defer v.opMu.Unlock()
	c, err := v.running("list cpus", phaseRunning)
	if err != nil {
		return nil, err
	}
	ids := v.removableCPUs(vcpus)
	if len(ids) == 0 {
		return nil, nil
	}
	slots, err := c.QueryHotpluggableCPUs(ctx)
	if err != nil {
		return nil, fmt.Errorf("qemu %s: list cpus: %w", v.cfg.ID, err)
	}
	byPath := make(map[string]map[string]any, len(slots))
	for _, s := range slots {
		if s.QOMPath != "" {
			byPath[s.QOMPath] = s.Props
		}
	}
	places := make([]hypervisor.CPUPlace, 0, len(ids))
	for _, id := range ids {
		props, ok := byPath[peripheralPath+id]
		if !ok {
			return nil, fmt.Errorf("qemu %s: vcpu %s is in no cpu slot: %w", v.cfg.ID, id, errdefs.ErrNotFound)
		}
		socket, sok := props["socket-id"].(float64)
		core, cok := props["core-id"].(float64)
		if !sok || !cok {
			return nil, fmt.Errorf("qemu %s: vcpu %s: slot properties %v lack socket-id or core-id: %w", v.cfg.ID, id, props, errdefs.ErrUnknown)
		}
		places = append(places, hypervisor.CPUPlace{Socket: uint32(socket), Core: uint32(core)})
	}
	return places, nil
}

// ShrinkCPUs unplugs hot-plugged vCPUs, newest first, down to vcpus (never below the boot
// count): device_del and the guest's release (DEVICE_DELETED) of each, within
// hotplugAckTimeout. The VM must be running: a paused guest cannot answer.
func (v *VM) ShrinkCPUs(ctx context.Context, vcpus uint32) error {
	if err := v.CanShrinkCPUs(); err != nil {
		return err
	}
	v.opMu.Lock()
	defer v.opMu.Unlock()
	c, err := v.running("shrink", phaseRunning)
	if err != nil {
		return err
	}
	for _, id := range v.removableCPUs(vcpus) {
		if err := v.unplugCPU(ctx, c, id); err != nil {
			return fmt.Errorf("qemu %s: unplug vcpu %s: %w", v.cfg.ID, id, err)
		}
		v.mu.Lock()
		v.hot.vcpus--
		v.mu.Unlock()
	}
	return nil
}

// ostEjectInProgress is the ACPI _OST status of an eject the guest is still working on.
const ostEjectInProgress = 0x84

// unplugCPU runs device_del for vCPU id and waits, within hotplugAckTimeout, for its
// DEVICE_DELETED (deviceDeleted: QEMU 7.2 names the vCPU's lapic only), then checks that
// its slot is free; a refusal the guest answers with (ACPI _OST, status other than success
// or in progress) ends the wait with that status.
func (v *VM) unplugCPU(ctx context.Context, c *qmp.Client, id string) error {
	events, unwatch := v.watchDevice(id)
	defer unwatch()
	gone, _, stop := v.expectDeleted(id)
	defer stop()
	if err := c.DeviceDel(ctx, id); err != nil {
		var qe *qmp.Error
		if errors.As(err, &qe) && qe.Class == "DeviceNotFound" {
			return nil
		}
		return err //nolint:wrapcheck // the caller names the vcpu
	}
	if err := v.awaitRelease(ctx, events, gone, "vcpu"); err != nil { // mem_shrink.go
		return err
	}
	return v.checkCPUSlotFree(ctx, c, id)
}

// checkCPUSlotFree checks that no CPU slot holds vCPU id any more.
func (v *VM) checkCPUSlotFree(ctx context.Context, c *qmp.Client, id string) error {
	slots, err := c.QueryHotpluggableCPUs(ctx)
	if err != nil {
		return fmt.Errorf("list cpus: %w", err)
	}
	for _, s := range slots {
		if s.QOMPath == peripheralPath+id {
			return fmt.Errorf("its device is gone but its cpu slot is still taken: %w", errdefs.ErrUnknown)
		}
	}
	return nil
}
