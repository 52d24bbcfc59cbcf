package qemu

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/vessel-containers/vessel/internal/hypervisor/qemu/qmp"
)

// deviceEvents hands the guest's ACPI _OST answers to hot-plugs (ACPI_DEVICE_OST) to the
// caller waiting for the device's answer, by device id. consumeEvents delivers; a waiter
// registers before the device_add that causes the event, so it cannot miss it. The end of
// an unplug (DEVICE_DELETED of a disk or a NIC) is tracked apart: deleted wakes the detach
// waiting for it, released remembers one that came with nobody waiting.
type deviceEvents struct {
	// waiters by device id; guarded by VM.mu.
	waiters map[string]chan qmp.Event
	// deleted are waiters for DEVICE_DELETED, by device id; guarded by VM.mu.
	deleted map[string]chan struct{}
	// released are the hot-plugged devices whose DEVICE_DELETED came with nobody waiting (a
	// detach that gave up before the guest released the device); guarded by VM.mu.
	released map[string]bool
}

// deviceOf names the device an event is about, "" when it is not about one.
func deviceOf(ev qmp.Event) string {
	switch ev.Name {
	case "ACPI_DEVICE_OST":
		var d struct {
			Info struct {
				Device string `json:"device"`
			} `json:"info"`
		}
		if json.Unmarshal(ev.Data, &d) == nil {
			return d.Info.Device
		}
	}
	return ""
}

// watchDevice registers for the events about device id; the caller must call the stop
// function it returns.
func (v *VM) watchDevice(id string) (<-chan qmp.Event, func()) {
	ch := make(chan qmp.Event, 4)
	v.mu.Lock()
	if v.devEvents.waiters == nil {
		v.devEvents.waiters = map[string]chan qmp.Event{}
	}
	v.devEvents.waiters[id] = ch
	v.mu.Unlock()
	return ch, func() {
		v.mu.Lock()
		delete(v.devEvents.waiters, id)
		v.mu.Unlock()
	}
}

// deliverDeviceEvent passes ev to whoever waits for its device; events nobody waits for
// are dropped (consumeEvents logs them).
func (v *VM) deliverDeviceEvent(ev qmp.Event) {
	id := deviceOf(ev)
	if id == "" {
		return
	}
	v.mu.Lock()
	ch := v.devEvents.waiters[id]
	v.mu.Unlock()
	if ch == nil {
		return
	}
	select {
	case ch <- ev:
	default: // a waiter takes one event; more are not news
	}
}

// awaitDeviceEvent waits for the event named name on ch, as long as ctx allows and QEMU
// runs.
func (v *VM) awaitDeviceEvent(ctx context.Context, ch <-chan qmp.Event, id, name string) (qmp.Event, error) {
	for {
		select {
		case ev := <-ch:
			if ev.Name == name {
				return ev, nil
			}
		case <-v.Done():
			return qmp.Event{}, fmt.Errorf("qemu %s: exited while waiting for %s of %s", v.cfg.ID, name, id)
		case <-ctx.Done():
			return qmp.Event{}, fmt.Errorf("qemu %s: waiting for %s of %s: %w", v.cfg.ID, name, id, context.Cause(ctx))
		}
	}
}

// expectDeleted registers for the DEVICE_DELETED of device dev: gone closes when it
// comes; released tells that it came already, after an earlier detach gave up. The caller
// must call stop, which also forgets a recorded release.
func (v *VM) expectDeleted(dev string) (gone <-chan struct{}, released bool, stop func()) {
	ch := make(chan struct{})
	v.mu.Lock()
	if v.devEvents.deleted == nil {
		v.devEvents.deleted = map[string]chan struct{}{}
	}
	released = v.devEvents.released[dev]
	v.devEvents.deleted[dev] = ch
	v.mu.Unlock()
	return ch, released, func() {
		v.mu.Lock()
		defer v.mu.Unlock()
		if v.devEvents.deleted[dev] == ch {
			delete(v.devEvents.deleted, dev)
		}
		select {
		case <-ch:
			delete(v.devEvents.released, dev)
		default:
			if released {
				delete(v.devEvents.released, dev)
			}
		}
	}
}

// deviceDeleted wakes the detach waiting for the device in a DEVICE_DELETED event, or
// records the release of a hot-plugged disk, NIC or DIMM nobody waits for.
func (v *VM) deviceDeleted(data json.RawMessage) {
	var d struct {
		Device string `json:"device"`
		Path   string `json:"path"`
	}
	if json.Unmarshal(data, &d) != nil {
		return
	}
	if d.Device == "" {
		// QEMU 7.2 announces an unplugged vCPU by its child's deletion only
		// (/machine/peripheral/<id>/lapic, without a device id).
		rest, ok := strings.CutPrefix(d.Path, peripheralPath)
		id, _, child := strings.Cut(rest, "/")
		if !ok || !child || !strings.HasPrefix(id, cpuDevicePrefix) {
			return
		}
		d.Device = id
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if ch, ok := v.devEvents.deleted[d.Device]; ok {
		close(ch)
		delete(v.devEvents.deleted, d.Device)
		return
	}
	if strings.HasPrefix(d.Device, dimmDevicePrefix) {
		v.dimmReleased(d.Device) // mem_shrink.go
		return
	}
	if strings.HasPrefix(d.Device, diskDevicePrefix) || strings.HasPrefix(d.Device, nicDevicePrefix) {
		if v.devEvents.released == nil {
			v.devEvents.released = map[string]bool{}
		}
		v.devEvents.released[d.Device] = true
	}
}
