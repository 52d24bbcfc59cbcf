package qemu

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/hypervisor/qemu/qmp"
)

// Disks are hot-plugged as virtio-blk-pci devices into the slots of one PCI bridge that
// every VM has from boot (bridgeArgs), shared with the NICs (nic.go): on q35 the root bus
// takes no hot-plugged device, and QEMU hot-plugs into the bridge through ACPI, which the
// guest answers at once both ways (native PCIe hotplug would make every removal wait 5 s
// for the attention button). With
// the virtio-scsi driver, the VM has one virtio-scsi controller from boot (scsiArgs) and
// each disk is a scsi-hd on it, at channel 0, scsi-id N (the unit number, as a bridge slot
// would be) and LUN 0.
//
// The host file reaches QEMU as a descriptor in an fd set (add-fd): QEMU opens
// "/dev/fdset/<id>" by duplicating it, so a jailed QEMU needs no access to the host path.
// A disk is blockdev-add (node vd-<id>) + device_add (device vdev-<id>); removal is
// device_del, the DEVICE_DELETED event once the guest released the device, blockdev-del
// and remove-fd.

const (
	// idBridge is the PCI bridge disks are plugged into, at bridgeSlot of the root bus.
	idBridge   = "vessel-bridge0"
	bridgeSlot = 0x1e
	// firstDiskSlot and lastDiskSlot bound the bridge slots used for disks.
	firstDiskSlot = 1
	lastDiskSlot  = 30

	diskNodePrefix   = "vd-"
	diskDevicePrefix = "vdev-"
	// With I/O limits, vd-<id> is a throttle node of group vtg-<id> over the file node
	// vdf-<id>.
	diskFilePrefix     = "vdf-"
	diskThrottlePrefix = "vtg-"
	// maxDiskID keeps node names within QEMU's 31 bytes.
	maxDiskID = 24
)

// idSCSI is the virtio-scsi controller of a VM whose block driver is virtio-scsi.
const idSCSI = "vessel-scsi0"

// scsiArgs is the VM's virtio-scsi controller, for the virtio-scsi block driver.
func scsiArgs(b hypervisor.BlockConfig) []string {
	if b.Driver != hypervisor.BlockVirtioSCSI {
		return nil
	}
	return []string{"-device", "virtio-scsi-pci,id=" + idSCSI}
}

// bridgeArgs is the PCI bridge for hot-plugged disks and for every NIC (nic.go). The
// reserves make the firmware give the empty bridge address windows, so devices plugged
// later get their BARs.
func bridgeArgs() []string {
	return []string{"-device", fmt.Sprintf(
		"pci-bridge,bus=pcie.0,id=%s,chassis_nr=1,shpc=off,addr=%#x,io-reserve=4k,mem-reserve=1m,pref64-reserve=1m",
		idBridge, bridgeSlot)}
}

// disk is one attached (or attaching, or detaching) disk.
type disk struct {
	slot  int
	fdset int
	// plugged is set once device_add succeeded.
	plugged bool
	// detaching is set while DetachDisk runs.
	detaching bool
}

// diskState is the VM's disks; guarded by VM.mu.
type diskState struct {
	disks map[string]*disk
}

var (
	_ hypervisor.DiskHotplugger = (*VM)(nil)
	_ hypervisor.DiskResizer    = (*VM)(nil)
)

// AttachDisk plugs d into a free bridge slot of the running VM.
func (v *VM) AttachDisk(ctx context.Context, d hypervisor.Disk) (_ hypervisor.DiskAddress, retErr error) {
	if isMicroVM(&v.cfg) {
		return hypervisor.DiskAddress{}, errMicroVM("attach disk " + d.ID)
	}
	if err := d.Validate(); err != nil {
		return hypervisor.DiskAddress{}, fmt.Errorf("qemu %s: attach disk: %w: %w", v.cfg.ID, err, errdefs.ErrInvalidArgument)
	}
	if len(d.ID) > maxDiskID {
		return hypervisor.DiskAddress{}, fmt.Errorf("qemu %s: attach disk: id %q is longer than %d bytes: %w", v.cfg.ID, d.ID, maxDiskID, errdefs.ErrInvalidArgument)
	}
	c, err := v.running("attach disk "+d.ID, phaseRunning)
	if err != nil {
		return hypervisor.DiskAddress{}, err
	}
	driver, err := blockDriverOf(d)
	if err != nil {
		return hypervisor.DiskAddress{}, fmt.Errorf("qemu %s: attach disk %s: %w", v.cfg.ID, d.ID, err)
	}

	v.mu.Lock()
	if v.disk.disks == nil {
		v.disk.disks = map[string]*disk{}
	}
	if _, dup := v.disk.disks[d.ID]; dup {
		v.mu.Unlock()
		return hypervisor.DiskAddress{}, fmt.Errorf("qemu %s: attach disk %s: %w", v.cfg.ID, d.ID, errdefs.ErrAlreadyExists)
	}
	slot := v.freeSlotLocked(false)
	if slot < 0 {
		v.mu.Unlock()
		return hypervisor.DiskAddress{}, fmt.Errorf("qemu %s: attach disk %s: all %d disk slots (shared with NICs) are in use: %w", v.cfg.ID, d.ID, lastDiskSlot-firstDiskSlot+1, errdefs.ErrResourceExhausted)
	}
	dk := &disk{slot: slot, fdset: -1}
	v.disk.disks[d.ID] = dk
	v.mu.Unlock()

	node, dev := diskNodePrefix+d.ID, diskDevicePrefix+d.ID
	defer func() {
		if retErr == nil {
			return
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opCleanupTimeout)
		defer cancel()
		if dk.fdset >= 0 {
			if err := c.RemoveFD(cctx, dk.fdset); err != nil {
				log.G(ctx).WithError(err).Warn("rollback: remove-fd")
			}
		}
		v.mu.Lock()
		delete(v.disk.disks, d.ID)
		v.mu.Unlock()
	}()

	fdset, err := c.AddFD(ctx, d.File, "vessel-disk:"+d.ID)
	if err != nil {
		return hypervisor.DiskAddress{}, fmt.Errorf("qemu %s: attach disk %s: pass its descriptor: %w", v.cfg.ID, d.ID, err)
	}
	dk.fdset = fdset
	if err := v.addNodes(ctx, c, d, driver, fdset); err != nil {
		return hypervisor.DiskAddress{}, fmt.Errorf("qemu %s: attach disk %s: %w", v.cfg.ID, d.ID, err)
	}
	devDriver, props, addr := "virtio-blk-pci", map[string]any{
		"drive": node,
		"bus":   idBridge,
		"addr":  fmt.Sprintf("%#x", slot),
	}, hypervisor.DiskAddress{PCIPath: fmt.Sprintf("%02x/%02x", bridgeSlot, slot)}
	if v.cfg.Block.Driver == hypervisor.BlockVirtioSCSI {
		devDriver, props, addr = "scsi-hd", map[string]any{
			"drive":   node,
			"bus":     idSCSI + ".0",
			"channel": 0,
			"scsi-id": slot,
			"lun":     0,
		}, hypervisor.DiskAddress{SCSIAddress: fmt.Sprintf("%d:0", slot)}
	}
	if err := c.DeviceAdd(ctx, devDriver, dev, props); err != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opCleanupTimeout)
		defer cancel()
		if derr := v.delNodes(cctx, c, d.ID); derr != nil {
			log.G(ctx).WithError(derr).Warn("rollback: remove the disk's block nodes")
		}
		return hypervisor.DiskAddress{}, fmt.Errorf("qemu %s: attach disk %s: %w", v.cfg.ID, d.ID, err)
	}
	v.mu.Lock()
	dk.plugged = true
	v.mu.Unlock()
	log.G(ctx).WithField("vm", v.cfg.ID).WithField("disk", d.ID).WithField("address", addr).Debug("disk attached")
	return addr, nil
}

// throttled tells whether disks get I/O limits (a throttle node over the file node).
func (v *VM) throttled() bool { return v.cfg.Block.MaxBytesPerSec > 0 || v.cfg.Block.MaxIOPS > 0 }

// addNodes adds the disk's block nodes: the file node on fd set fdset, named vd-<id>, or,
// with I/O limits, the file node vdf-<id>, the throttle group vtg-<id> and the throttle
// node vd-<id> over them. On error it removes what it added.
func (v *VM) addNodes(ctx context.Context, c *qmp.Client, d hypervisor.Disk, driver string, fdset int) (retErr error) {
	node := diskNodePrefix + d.ID
	if !v.throttled() {
		return aioError(v.cfg.Block, c.BlockdevAdd(ctx, blockdevOptions(v.cfg.Block, driver, node, fdset, d.ReadOnly)))
	}
	file, group := diskFilePrefix+d.ID, diskThrottlePrefix+d.ID
	var undo []func(context.Context) error
	defer func() {
		if retErr == nil {
			return
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opCleanupTimeout)
		defer cancel()
		for i := len(undo) - 1; i >= 0; i-- {
			if err := undo[i](cctx); err != nil {
				log.G(ctx).WithError(err).Warn("rollback of a disk's block nodes")
			}
		}
	}()
	if err := c.BlockdevAdd(ctx, blockdevOptions(v.cfg.Block, driver, file, fdset, d.ReadOnly)); err != nil {
		return aioError(v.cfg.Block, err)
	}
	undo = append(undo, func(ctx context.Context) error { return c.BlockdevDel(ctx, file) })
	limits := map[string]any{}
	if b := v.cfg.Block.MaxBytesPerSec; b > 0 {
		limits["bps-total"] = b
	}
	if n := v.cfg.Block.MaxIOPS; n > 0 {
		limits["iops-total"] = n
	}
	if err := c.ObjectAdd(ctx, "throttle-group", group, map[string]any{"limits": limits}); err != nil {
		return fmt.Errorf("i/o limits: %w", err)
	}
	undo = append(undo, func(ctx context.Context) error { return c.ObjectDel(ctx, group) })
	return c.BlockdevAdd(ctx, map[string]any{
		"driver":         "throttle",
		"node-name":      node,
		"throttle-group": group,
		"file":           file,
		"read-only":      d.ReadOnly,
	})
}

// delNodes removes the disk's block nodes (and throttle group) that addNodes made; a node
// already gone is not an error.
func (v *VM) delNodes(ctx context.Context, c *qmp.Client, id string) error {
	gone := func(err error) bool {
		var qe *qmp.Error
		return err == nil || (errors.As(err, &qe) && strings.Contains(qe.Desc, "Failed to find node"))
	}
	if err := c.BlockdevDel(ctx, diskNodePrefix+id); !gone(err) {
		return err
	}
	if !v.throttled() {
		return nil
	}
	if err := c.BlockdevDel(ctx, diskFilePrefix+id); !gone(err) {
		return err
	}
	return c.ObjectDel(ctx, diskThrottlePrefix+id)
}

// opCleanupTimeout bounds the QMP commands that undo a failed attach.
const opCleanupTimeout = 10 * time.Second

// freeSlotLocked returns the lowest free unit for a disk (a bridge slot, or a SCSI id)
// or, with nic, for a NIC (a bridge slot), or -1. virtio-blk disks and NICs share the
// bridge (nic.go); SCSI ids are the disks' own.
//
// Preconditions: v.mu is held.
func (v *VM) freeSlotLocked(nic bool) int {
	shared := v.cfg.Block.Driver != hypervisor.BlockVirtioSCSI
	for s := firstDiskSlot; s <= lastDiskSlot; s++ {
		own, other := v.diskInSlotLocked(s), v.nicInSlotLocked(s)
		if nic {
			own, other = other, own
		}
		if !own && (!shared || !other) {
			return s
		}
	}
	return -1
}

// diskInSlotLocked tells whether a disk uses unit s.
//
// Preconditions: v.mu is held.
func (v *VM) diskInSlotLocked(s int) bool {
	for _, d := range v.disk.disks {
		if d.slot == s {
			return true
		}
	}
	return false
}

// blockDriverOf is QEMU's block driver for the disk's file: host_device for a block
// device, file for a regular file.
func blockDriverOf(d hypervisor.Disk) (string, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(d.File.Fd()), &st); err != nil {
		return "", fmt.Errorf("stat %s: %w", d.File.Name(), err)
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFBLK:
		return "host_device", nil
	case unix.S_IFREG:
		return "file", nil
	}
	return "", fmt.Errorf("%s is neither a block device nor a regular file: %w", d.File.Name(), errdefs.ErrInvalidArgument)
}

// blockdevOptions are blockdev-add's arguments for a disk on fd set fdset.
func blockdevOptions(b hypervisor.BlockConfig, driver, node string, fdset int, readOnly bool) map[string]any {
	opts := map[string]any{
		"driver":    driver,
		"node-name": node,
		"filename":  fmt.Sprintf("/dev/fdset/%d", fdset),
		"read-only": readOnly,
		"cache":     map[string]any{"direct": b.CacheDirect, "no-flush": b.CacheNoFlush},
	}
	if b.AIO != "" {
		opts["aio"] = string(b.AIO)
	}
	return opts
}

// aioError marks QEMU's refusal of the configured AIO mode as not implemented here.
func aioError(b hypervisor.BlockConfig, err error) error {
	var qe *qmp.Error
	if b.AIO == "" || b.AIO == hypervisor.AIOThreads || !errors.As(err, &qe) {
		return err
	}
	desc := strings.ToLower(qe.Desc)
	if strings.Contains(desc, "io_uring") || strings.Contains(desc, "aio") {
		return fmt.Errorf("block aio %s: this QEMU or host cannot do it: %w: %w", b.AIO, err, errdefs.ErrNotImplemented)
	}
	return err
}

// DetachDisk unplugs a disk: device_del, the guest's release (DEVICE_DELETED), then the
// block node and the fd set.
func (v *VM) DetachDisk(ctx context.Context, id string) error {
	c, err := v.running("detach disk "+id, phaseRunning, phasePaused)
	if err != nil {
		return err
	}
	dev := diskDevicePrefix + id
	v.mu.Lock()
	dk, ok := v.disk.disks[id]
	switch {
	case !ok || !dk.plugged:
		v.mu.Unlock()
		return fmt.Errorf("qemu %s: detach disk %s: %w", v.cfg.ID, id, errdefs.ErrNotFound)
	case dk.detaching:
		v.mu.Unlock()
		return fmt.Errorf("qemu %s: detach disk %s: already being detached: %w", v.cfg.ID, id, errdefs.ErrFailedPrecondition)
	}
	dk.detaching = true
	v.mu.Unlock()
	gone, released, stop := v.expectDeleted(dev)
	defer stop()
	defer func() {
		v.mu.Lock()
		dk.detaching = false
		v.mu.Unlock()
	}()

	if !released {
		if err := v.unplug(ctx, c, dev, gone); err != nil {
			return fmt.Errorf("qemu %s: detach disk %s: %w", v.cfg.ID, id, err)
		}
	}
	if err := v.delNodes(ctx, c, id); err != nil {
		return fmt.Errorf("qemu %s: detach disk %s: %w", v.cfg.ID, id, err)
	}
	if err := c.RemoveFD(ctx, dk.fdset); err != nil {
		log.G(ctx).WithError(err).WithField("disk", id).Warn("remove-fd after detach")
	}
	v.mu.Lock()
	delete(v.disk.disks, id)
	v.mu.Unlock()
	log.G(ctx).WithField("vm", v.cfg.ID).WithField("disk", id).Debug("disk detached")
	return nil
}

// unplug asks the guest to release device dev and waits until it did (gone closes on its
// DEVICE_DELETED), QEMU exits or ctx ends. A device QEMU no longer has counts as released;
// one whose earlier removal is still pending is waited for.
func (v *VM) unplug(ctx context.Context, c *qmp.Client, dev string, gone <-chan struct{}) error {
	if err := c.DeviceDel(ctx, dev); err != nil {
		var qe *qmp.Error
		switch {
		case errors.As(err, &qe) && qe.Class == "DeviceNotFound":
			return nil
		case errors.As(err, &qe) && strings.Contains(qe.Desc, "in the process of unplug"):
		default:
			return err
		}
	}
	select {
	case <-gone:
		return nil
	case <-v.done:
		return errors.New("qemu exited")
	case <-ctx.Done():
		return fmt.Errorf("the guest did not release the device: %w", ctx.Err())
	}
}

// Disks lists the disks QEMU has block nodes for.
func (v *VM) Disks(ctx context.Context) ([]string, error) {
	c, err := v.running("list disks", phaseRunning, phasePaused)
	if err != nil {
		return nil, err
	}
	nodes, err := c.QueryNamedBlockNodes(ctx)
	if err != nil {
		return nil, fmt.Errorf("qemu %s: list disks: %w", v.cfg.ID, err)
	}
	var ids []string
	for _, n := range nodes {
		if id, ok := strings.CutPrefix(n.NodeName, diskNodePrefix); ok {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// ResizeDisk grows or shrinks disk id's top node (vd-<id>: the file node, or the throttle
// node over it, which passes the size down) with block_resize.
func (v *VM) ResizeDisk(ctx context.Context, id string, size uint64) error {
	if size == 0 || size%512 != 0 {
		return fmt.Errorf("qemu %s: resize disk %s: size %d is not a positive multiple of 512: %w", v.cfg.ID, id, size, errdefs.ErrInvalidArgument)
	}
	c, err := v.running("resize disk "+id, phaseRunning)
	if err != nil {
		return err
	}
	v.mu.Lock()
	dk, ok := v.disk.disks[id]
	plugged := ok && dk.plugged && !dk.detaching
	v.mu.Unlock()
	if !plugged {
		return fmt.Errorf("qemu %s: resize disk %s: %w", v.cfg.ID, id, errdefs.ErrNotFound)
	}
	if err := c.BlockResize(ctx, diskNodePrefix+id, size); err != nil {
		return fmt.Errorf("qemu %s: resize disk %s to %d bytes: %w", v.cfg.ID, id, size, err)
	}
	return nil
}
