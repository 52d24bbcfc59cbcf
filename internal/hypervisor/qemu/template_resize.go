package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/containerd/errdefs"

	"github.com/vessel-containers/vessel/internal/hypervisor"
)

// Growing a running VM (hypervisor.Resizer): vCPUs with device_add into the free slots
// query-hotpluggable-cpus lists (ACPI CPU hotplug), memory as pc-dimm devices backed by
// memory-backend-ram objects (ACPI memory hotplug), one DIMM per Grow. Each device_add
// waits for the guest's ACPI _OST answer, so when Grow returns the guest kernel has added
// the vCPUs and memory blocks and the agent can online them (OnlineCPUMem). Both work under
// TCG with the project's guest kernel. Removing vCPUs is in cpu_shrink.go, removing DIMMs
// in mem_shrink.go.

// hotplugAckTimeout bounds the wait for the guest's answer to a hot-plug.
const hotplugAckTimeout = 30 * time.Second

// errNotAcked: the device was added but the guest did not answer as it should.
var errNotAcked = errors.New("the guest did not accept the hot-plugged device")

// plugAcked runs add (a device_add of device id) and waits for the guest's ACPI _OST
// answer for id; an answer with a status other than success is an error.
func (v *VM) plugAcked(ctx context.Context, id string, add func() error) error {
	events, stop := v.watchDevice(id)
	defer stop()
	if err := add(); err != nil {
		return err
	}
	actx, cancel := context.WithTimeout(ctx, hotplugAckTimeout)
	defer cancel()
	ev, err := v.awaitDeviceEvent(actx, events, id, "ACPI_DEVICE_OST")
	if err != nil {
		return fmt.Errorf("%w: %w", errNotAcked, err)
	}
	var d struct {
		Info struct {
			Status int `json:"status"`
		} `json:"info"`
	}
	if err := json.Unmarshal(ev.Data, &d); err != nil {
		return fmt.Errorf("%w: ACPI_DEVICE_OST %s: %w", errNotAcked, ev.Data, err)
	}
	if d.Info.Status != 0 {
		return fmt.Errorf("%w: ACPI _OST status %#x for %s", errNotAcked, d.Info.Status, id)
	}
	return nil
}

// dimmAlignMiB is the guest's memory block size on x86-64: DIMMs are rounded up to it so
// that all of a DIMM can be onlined.
const dimmAlignMiB = 128

// hotplugged counts what Grow added on top of Config's boot size.
type hotplugged struct {
	vcpus     uint32
	memoryMiB uint32
	// dimms are the DIMMs Grow added and nothing removed yet, oldest first.
	dimms []hotDIMM
	// nextDIMM numbers the ids of the next DIMM and its backend: ids are never reused,
	// so a backend whose removal failed cannot clash with a new one.
	nextDIMM uint32
	// staleBackends are the backends of DIMMs the guest released while nobody waited
	// (mem_shrink.go); the next Grow or ShrinkMemory deletes them.
	staleBackends []string
}

// hotDIMM is a hot-plugged DIMM: its device id, its backend's id and its size.
type hotDIMM struct {
	dev, mem string
	sizeMiB  uint32
}

var _ hypervisor.Resizer = (*VM)(nil)

// Size is the VM's vCPUs and memory: the boot size plus what Grow added.
func (v *VM) Size() (vcpus, memoryMiB uint32) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.cfg.VCPUs + v.hot.vcpus, v.cfg.MemoryMiB + v.hot.memoryMiB
}

// Grow hot-plugs vCPUs and memory up to the totals given. Memory grows in 128 MiB steps,
// so the VM may end up with up to 127 MiB more than asked (never above MaxMemoryMiB).
func (v *VM) Grow(ctx context.Context, vcpus, memoryMiB uint32) error {
	v.opMu.Lock()
	defer v.opMu.Unlock()
	c, err := v.running("grow", phaseRunning, phasePaused)
	if err != nil {
		return err
	}
	curCPUs, curMem := v.Size()
	maxCPUs := max(v.cfg.MaxVCPUs, v.cfg.VCPUs)
	maxMem := max(v.cfg.MaxMemoryMiB, v.cfg.MemoryMiB)
	if vcpus > maxCPUs {
		return fmt.Errorf("qemu %s: grow to %d vcpus: the vm was booted with at most %d: %w", v.cfg.ID, vcpus, maxCPUs, errdefs.ErrInvalidArgument)
	}
	if memoryMiB > maxMem {
		return fmt.Errorf("qemu %s: grow to %d MiB: the vm was booted with at most %d MiB: %w", v.cfg.ID, memoryMiB, maxMem, errdefs.ErrInvalidArgument)
	}

	if vcpus > curCPUs {
		slots, err := c.QueryHotpluggableCPUs(ctx)
		if err != nil {
			return fmt.Errorf("qemu %s: grow: %w", v.cfg.ID, err)
		}
		for _, s := range slots {
			if curCPUs >= vcpus {
				break
			}
			if s.QOMPath != "" {
				continue
			}
			id := fmt.Sprintf("%s%d", cpuDevicePrefix, curCPUs)
			if err := v.plugAcked(ctx, id, func() error { return c.DeviceAdd(ctx, s.Type, id, s.Props) }); err != nil {
				return fmt.Errorf("qemu %s: hot-plug vcpu %s: %w", v.cfg.ID, id, err)
			}
			curCPUs++
			v.mu.Lock()
			v.hot.vcpus++
			v.mu.Unlock()
		}
		if curCPUs < vcpus {
			return fmt.Errorf("qemu %s: grow to %d vcpus: only %d cpu slots: %w", v.cfg.ID, vcpus, curCPUs, errdefs.ErrResourceExhausted)
		}
	}

	if memoryMiB > curMem {
		add := (memoryMiB - curMem + dimmAlignMiB - 1) / dimmAlignMiB * dimmAlignMiB
		add = min(add, maxMem-curMem)
		v.deleteStaleBackends(ctx, c) // mem_shrink.go
		v.mu.Lock()
		n, next := uint32(len(v.hot.dimms)), v.hot.nextDIMM
		v.mu.Unlock()
		slots := v.cfg.MemorySlots
		if slots == 0 {
			slots = defaultMemorySlots // as commandLine
		}
		if n >= slots {
			return fmt.Errorf("qemu %s: grow memory: all %d memory slots are used: %w", v.cfg.ID, slots, errdefs.ErrResourceExhausted)
		}
		mem, dimm := fmt.Sprintf("%s%d", memBackendPrefix, next), fmt.Sprintf("%s%d", dimmDevicePrefix, next)
		v.mu.Lock()
		v.hot.nextDIMM++
		v.mu.Unlock()
		// Memory of a virtio-fs VM is shared with virtiofsd (vhost-user maps it), added
		// memory too.
		backend, props := "memory-backend-ram", map[string]any{"size": uint64(add) << 20}
		if v.cfg.SharedFS == hypervisor.SharedFSVirtioFS {
			backend, props["share"] = "memory-backend-memfd", true
		}
		if err := c.ObjectAdd(ctx, backend, mem, props); err != nil {
			return fmt.Errorf("qemu %s: hot-plug %d MiB: %w", v.cfg.ID, add, err)
		}
		if err := v.plugAcked(ctx, dimm, func() error { return c.DeviceAdd(ctx, "pc-dimm", dimm, map[string]any{"memdev": mem}) }); err != nil {
			if !errors.Is(err, errNotAcked) {
				_ = c.ObjectDel(ctx, mem)
			}
			return fmt.Errorf("qemu %s: hot-plug %d MiB: %w", v.cfg.ID, add, err)
		}
		v.mu.Lock()
		v.hot.memoryMiB += add
		v.hot.dimms = append(v.hot.dimms, hotDIMM{dev: dimm, mem: mem, sizeMiB: add})
		v.mu.Unlock()
	}
	return nil
}
