package qemu

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/hypervisor/qemu/qmp"
)

// Every NIC is a virtio-net-pci device "vnic-<id>" in a slot of the PCI bridge disks are
// hot-plugged into (disk.go), on a tap netdev "<id>": the NICs of Config.NICs from the
// command line, in the lowest slots, and the ones AttachNIC adds in the lowest free slot.
// So any of them can be unplugged while the VM runs (on q35 the root bus takes no
// hot-plug, neither way). AttachNIC hands the tap (and vhost-net) descriptors to the
// monitor by name (getfd), which netdev_add takes over; DetachNIC is device_del, the
// guest's release (DEVICE_DELETED) and netdev_del, which closes QEMU's descriptors.

// nicDevicePrefix starts the id of a NIC's PCI device.
const nicDevicePrefix = "vnic-"

// maxNICID keeps the descriptor names ("vnic-vhost-<id>") short.
const maxNICID = 24

// nic is one attached (or attaching, or detaching) NIC.
type nic struct {
	slot int
	// plugged is set once device_add succeeded (at boot for Config.NICs).
	plugged bool
	// detaching is set while DetachNIC runs.
	detaching bool
}

// nicState is the VM's NICs; guarded by VM.mu.
type nicState struct {
	nics map[string]*nic
}

var _ hypervisor.NICHotplugger = (*VM)(nil)

// coldNICs records the NICs of cfg in the slots commandLine gives them.
func coldNICs(cfg *hypervisor.Config) nicState {
	st := nicState{nics: map[string]*nic{}}
	for i, n := range cfg.NICs {
		st.nics[n.ID] = &nic{slot: coldNICSlot(i), plugged: true}
	}
	return st
}

// coldNICSlot is the bridge slot of the i-th NIC of Config.NICs.
func coldNICSlot(i int) int { return firstDiskSlot + i }

// nicDeviceArg is the -device value of NIC n in bridge slot slot.
func nicDeviceArg(n hypervisor.NIC, slot int) string {
	arg := fmt.Sprintf("virtio-net-pci,id=%s%s,netdev=%s,mac=%s,bus=%s,addr=%#x", nicDevicePrefix, n.ID, n.ID, n.MAC, idBridge, slot)
	if n.Queues() > 1 {
		arg += fmt.Sprintf(",mq=on,vectors=%d", nicVectors(n))
	}
	return arg
}

// nicVectors is the MSI-X vectors of multiqueue NIC n: one per queue of each of its
// queue pairs, one for the control queue and one for configuration changes.
func nicVectors(n hypervisor.NIC) int { return 2*n.Queues() + 2 }

// pciPathOf is the guest PCI path of bridge slot slot.
func pciPathOf(slot int) string { return fmt.Sprintf("%02x/%02x", bridgeSlot, slot) }

// nicInSlotLocked tells whether a NIC uses bridge slot s.
//
// Preconditions: v.mu is held.
func (v *VM) nicInSlotLocked(s int) bool {
	for _, n := range v.nic.nics {
		if n.slot == s {
			return true
		}
	}
	return false
}

// AttachNIC plugs n into a free bridge slot of the running VM and returns its PCI path.
func (v *VM) AttachNIC(ctx context.Context, n hypervisor.NIC) (_ string, retErr error) {
	if isMicroVM(&v.cfg) {
		return "", errMicroVM("attach nic " + n.ID)
	}
	if err := n.Validate(); err != nil {
		return "", fmt.Errorf("qemu %s: attach nic: %w: %w", v.cfg.ID, err, errdefs.ErrInvalidArgument)
	}
	if len(n.ID) > maxNICID {
		return "", fmt.Errorf("qemu %s: attach nic: id %q is longer than %d bytes: %w", v.cfg.ID, n.ID, maxNICID, errdefs.ErrInvalidArgument)
	}
	c, err := v.running("attach nic "+n.ID, phaseRunning)
	if err != nil {
		return "", err
	}
	v.mu.Lock()
	if v.nic.nics == nil {
		v.nic.nics = map[string]*nic{}
	}
	if _, dup := v.nic.nics[n.ID]; dup {
		v.mu.Unlock()
		return "", fmt.Errorf("qemu %s: attach nic %s: %w", v.cfg.ID, n.ID, errdefs.ErrAlreadyExists)
	}
	slot := v.freeSlotLocked(true)
	if slot < 0 {
		v.mu.Unlock()
		return "", fmt.Errorf("qemu %s: attach nic %s: all %d bridge slots are in use: %w", v.cfg.ID, n.ID, lastDiskSlot-firstDiskSlot+1, errdefs.ErrResourceExhausted)
	}
	nc := &nic{slot: slot}
	v.nic.nics[n.ID] = nc
	v.mu.Unlock()
	defer func() {
		if retErr != nil {
			v.mu.Lock()
			delete(v.nic.nics, n.ID)
			v.mu.Unlock()
		}
	}()

	if err := v.addNetdev(ctx, c, n); err != nil {
		return "", fmt.Errorf("qemu %s: attach nic %s: %w", v.cfg.ID, n.ID, err)
	}
	props := map[string]any{
		"netdev": n.ID,
		"mac":    n.MAC,
		"bus":    idBridge,
		"addr":   fmt.Sprintf("%#x", slot),
	}
	if n.Queues() > 1 {
		props["mq"], props["vectors"] = true, nicVectors(n)
	}
	err = c.DeviceAdd(ctx, "virtio-net-pci", nicDevicePrefix+n.ID, props)
	if err != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opCleanupTimeout)
		defer cancel()
		if derr := c.NetdevDel(cctx, n.ID); derr != nil {
			log.G(ctx).WithError(derr).Warn("rollback: netdev_del")
		}
		return "", fmt.Errorf("qemu %s: attach nic %s: %w", v.cfg.ID, n.ID, err)
	}
	v.mu.Lock()
	nc.plugged = true
	v.mu.Unlock()
	log.G(ctx).WithField("vm", v.cfg.ID).WithField("nic", n.ID).WithField("pci", pciPathOf(slot)).Debug("nic attached")
	return pciPathOf(slot), nil
}

// addNetdev passes n's descriptors to the monitor and adds the tap netdev on them. On
// error no descriptor of n is left with the monitor.
func (v *VM) addNetdev(ctx context.Context, c *qmp.Client, n hypervisor.NIC) (retErr error) {
	var passed []string
	defer func() {
		if retErr == nil {
			return
		}
		// netdev_add may have taken some over before it failed: those are not found.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opCleanupTimeout)
		defer cancel()
		for _, name := range passed {
			var qe *qmp.Error
			if err := c.CloseFD(cctx, name); err != nil && !errors.As(err, &qe) {
				log.G(ctx).WithError(err).Warn("rollback: closefd")
			}
		}
	}()
	// One queue keeps the names QEMU's fd/vhostfd take; queue k of several is "-k".
	var taps, vhosts []string
	for k, q := range append([]hypervisor.NICQueue{{Tap: n.Tap, Vhost: n.Vhost}}, n.MoreQueues...) {
		suffix := ""
		if n.Queues() > 1 {
			suffix = fmt.Sprintf("-%d", k)
		}
		tapName := nicDevicePrefix + "tap-" + n.ID + suffix
		if err := c.GetFD(ctx, tapName, q.Tap); err != nil {
			return fmt.Errorf("pass the tap descriptor of queue %d: %w", k, err)
		}
		passed = append(passed, tapName)
		taps = append(taps, tapName)
		if q.Vhost != nil {
			vhostName := nicDevicePrefix + "vhost-" + n.ID + suffix
			if err := c.GetFD(ctx, vhostName, q.Vhost); err != nil {
				return fmt.Errorf("pass the vhost-net descriptor of queue %d: %w", k, err)
			}
			passed = append(passed, vhostName)
			vhosts = append(vhosts, vhostName)
		}
	}
	opts := map[string]any{"type": "tap", "id": n.ID}
	if len(taps) == 1 {
		opts["fd"] = taps[0]
		if len(vhosts) == 1 {
			opts["vhost"], opts["vhostfd"] = true, vhosts[0]
		}
	} else {
		opts["fds"] = strings.Join(taps, ":")
		if len(vhosts) > 0 {
			opts["vhost"], opts["vhostfds"] = true, strings.Join(vhosts, ":")
		}
	}
	return c.NetdevAdd(ctx, opts)
}

// DetachNIC unplugs a NIC: device_del, the guest's release (DEVICE_DELETED), then
// netdev_del.
func (v *VM) DetachNIC(ctx context.Context, id string) error {
	if isMicroVM(&v.cfg) {
		return errMicroVM("detach nic " + id)
	}
	c, err := v.running("detach nic "+id, phaseRunning, phasePaused)
	if err != nil {
		return err
	}
	v.mu.Lock()
	nc, ok := v.nic.nics[id]
	switch {
	case !ok || !nc.plugged:
		v.mu.Unlock()
		return fmt.Errorf("qemu %s: detach nic %s: %w", v.cfg.ID, id, errdefs.ErrNotFound)
	case nc.detaching:
		v.mu.Unlock()
		return fmt.Errorf("qemu %s: detach nic %s: already being detached: %w", v.cfg.ID, id, errdefs.ErrFailedPrecondition)
	}
	nc.detaching = true
	v.mu.Unlock()
	defer func() {
		v.mu.Lock()
		nc.detaching = false
		v.mu.Unlock()
	}()
	dev := nicDevicePrefix + id
	gone, released, stop := v.expectDeleted(dev)
	defer stop()
	if !released {
		if err := v.unplug(ctx, c, dev, gone); err != nil {
			return fmt.Errorf("qemu %s: detach nic %s: %w", v.cfg.ID, id, err)
		}
	}
	if err := c.NetdevDel(ctx, id); err != nil {
		var qe *qmp.Error
		if !errors.As(err, &qe) || !strings.Contains(qe.Desc, "not found") {
			return fmt.Errorf("qemu %s: detach nic %s: %w", v.cfg.ID, id, err)
		}
	}
	v.mu.Lock()
	delete(v.nic.nics, id)
	v.mu.Unlock()
	log.G(ctx).WithField("vm", v.cfg.ID).WithField("nic", id).Debug("nic detached")
	return nil
}
