package sandbox

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/oci"
)

// Host block devices reach a container as disks of the VM: a block device in the spec's
// linux.devices is attached and handed to the container raw (the agent gives it the
// guest's device numbers), and a disk mount (oci.IsDiskMount) is attached and mounted in
// the guest, then bind-mounted into the container. The host never mounts the device.
// A device used by several containers of the sandbox is attached once and detached after
// its last user; its file system is mounted once in the guest, at the same mount point,
// which the agent reference-counts.

// guestDiskDir is where the agent mounts disks in the guest.
const guestDiskDir = "/run/vessel/disks"

// guestRootfsDir is where the agent mounts the overlays it builds over layer disks, one
// per container, named by its id.
const guestRootfsDir = "/run/vessel/rootfs"

// sysDevBlock is sysfs's directory of block devices by "major:minor".
const sysDevBlock = "/sys/dev/block"

// diskSet is the sandbox's attached disks.
type diskSet struct {
	// mu guards byKey and next. It is held across a disk's attach and detach (QMP commands
	// and the guest's release), so that two containers asking for one device attach it once;
	// it is never held with Sandbox.mu.
	mu    sync.Mutex
	byKey map[diskKey]*attachedDisk
	// next numbers the disk ids.
	next int
}

// diskKey identifies what a disk is on the host: a block device by its number, a regular
// file (a loop-mounted image) by its file system device and inode.
type diskKey struct {
	rdev     uint64
	dev, ino uint64
}

// blockKey is the key of block device number rdev.
func blockKey(rdev uint64) diskKey { return diskKey{rdev: rdev} }

// keyOf is the key of the file st describes, a block device or a regular file.
func keyOf(st *unix.Stat_t) diskKey {
	if st.Mode&unix.S_IFMT == unix.S_IFBLK {
		return blockKey(st.Rdev)
	}
	return diskKey{dev: st.Dev, ino: st.Ino}
}

// attachedDisk is one host device or file attached to the VM.
type attachedDisk struct {
	id       string
	addr     hypervisor.DiskAddress
	readOnly bool
	// size is the disk's size in bytes as the VM has it: the file's or device's at attach,
	// then what ResizeDisk set.
	size uint64
	// refs counts the containers (and uses within one container) holding it.
	refs int
}

// guestAddress is the agent's device type and address of the disk: "scsi" and its SCSI
// address, or "blk" and its PCI path.
func (d *attachedDisk) guestAddress() (string, string) {
	if d.addr.SCSIAddress != "" {
		return "scsi", d.addr.SCSIAddress
	}
	return "blk", d.addr.PCIPath
}

// plugDisks attaches the container's root file system disk (plan.RootfsDisk) or layer
// disks (plan.RootfsOverlay), host block devices (except the nodes only,
// plan.AbsentDevices) and disk mounts, rewrites guest (the root
// is the guest's mount of the rootfs disk or of the overlay over the layer disks; the disk
// mounts become bind mounts of the guest's mount of the disk) and returns the storages and
// devices for the agent's CreateContainer. Each attach registers its release on rollback;
// the devices held are added to c.disks.
func (s *Sandbox) plugDisks(ctx context.Context, c *Container, plan *oci.Container, guest *specs.Spec, rollback *undo) ([]*agentv1.Storage, []*agentv1.Device, error) {
	var storages []*agentv1.Storage
	var devices []*agentv1.Device
	acquire := func(what string, dev diskKey, hostPath string, readOnly bool) (*attachedDisk, error) {
		d, err := s.acquireDisk(ctx, dev, hostPath, readOnly)
		if err != nil {
			return nil, fmt.Errorf("container %s: %s: %w", c.id, what, err)
		}
		c.disks = append(c.disks, dev)
		rollback.add(func(ctx context.Context) error { return s.releaseDisk(ctx, dev) })
		return d, nil
	}
	if guest.Linux != nil {
		for i, sd := range guest.Linux.Devices {
			if sd.Type != "b" || slices.Contains(plan.AbsentDevices, sd.Path) {
				continue
			}
			what := fmt.Sprintf("linux.devices[%d] (%s)", i, sd.Path)
			dev := blockKey(unix.Mkdev(uint32(sd.Major), uint32(sd.Minor)))
			hostPath, err := hostBlockPath(sd.Major, sd.Minor)
			if err != nil {
				return nil, nil, fmt.Errorf("container %s: %s: %w", c.id, what, err)
			}
			d, err := acquire(what, dev, hostPath, false)
			if err != nil {
				return nil, nil, err
			}
			kind, addr := d.guestAddress()
			devices = append(devices, &agentv1.Device{Id: d.id, Type: kind, VmPath: addr, ContainerPath: sd.Path})
		}
	}
	// mountDisk attaches the disk of mount m and returns the guest's mount point of it
	// and the per-container bind options.
	mountDisk := func(what string, m specs.Mount) (string, []string, error) {
		var st unix.Stat_t
		if err := unix.Stat(m.Source, &st); err != nil {
			return "", nil, fmt.Errorf("container %s: %s: %w", c.id, what, err)
		}
		loop := slices.Contains(m.Options, "loop")
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFBLK:
		case unix.S_IFREG:
			if !loop {
				return "", nil, fmt.Errorf("container %s: %s: the source is a file without the loop option: %w", c.id, what, errdefs.ErrInvalidArgument)
			}
		default:
			return "", nil, fmt.Errorf("container %s: %s: the source is not a block device: %w", c.id, what, errdefs.ErrInvalidArgument)
		}
		fsOpts, bindOpts := splitDiskOptions(m.Options)
		d, err := acquire(what, keyOf(&st), m.Source, slices.Contains(bindOpts, "ro"))
		if err != nil {
			return "", nil, err
		}
		if d.readOnly {
			fsOpts = append(fsOpts, "ro")
		}
		mp := path.Join(guestDiskDir, d.id)
		kind, addr := d.guestAddress()
		storages = append(storages, &agentv1.Storage{Driver: kind, Source: addr, Fstype: m.Type, Options: fsOpts, MountPoint: mp})
		return mp, bindOpts, nil
	}
	if rootfs := plan.RootfsDisk; rootfs != nil {
		mp, _, err := mountDisk(fmt.Sprintf("root file system (%s %s)", rootfs.Type, rootfs.Source), *rootfs)
		if err != nil {
			return nil, nil, err
		}
		guest.Root.Path = mp
	}
	if o := plan.RootfsOverlay; o != nil {
		mps := make([]string, len(o.Disks))
		for i, d := range o.Disks {
			mp, _, err := mountDisk(fmt.Sprintf("root file system layer %d (%s %s)", i, d.Type, d.Source), d)
			if err != nil {
				return nil, nil, err
			}
			mps[i] = mp
		}
		st := overlayStorage(o, mps, path.Join(guestRootfsDir, c.id))
		storages = append(storages, st)
		guest.Root.Path = st.MountPoint
	}
	for i := range guest.Mounts {
		m := &guest.Mounts[i]
		if !oci.IsDiskMount(*m) {
			continue
		}
		mp, bindOpts, err := mountDisk(fmt.Sprintf("mount %s (%s %s)", m.Destination, m.Type, m.Source), *m)
		if err != nil {
			return nil, nil, err
		}
		*m = specs.Mount{Destination: m.Destination, Type: "bind", Source: mp, Options: append([]string{"rbind"}, bindOpts...)}
	}
	return storages, devices, nil
}

// overlayStorage is the agent's storage of the overlay o at mountPoint, over its disks
// mounted at mps.
func overlayStorage(o *oci.DiskOverlay, mps []string, mountPoint string) *agentv1.Storage {
	dir := func(d oci.DiskDir) string { return path.Join(mps[d.Disk], d.Path) }
	lower := make([]string, len(o.Lower))
	for i, l := range o.Lower {
		lower[i] = dir(l)
	}
	opts := append([]string{"lowerdir=" + strings.Join(lower, ":"), "upperdir=" + dir(o.Upper), "workdir=" + dir(o.Work)}, o.Options...)
	return &agentv1.Storage{Driver: "overlay", Source: "overlay", Fstype: "overlay", Options: opts, MountPoint: mountPoint}
}

// notBlockDevice refuses a bind mount of a host block device node: shared as a file, the
// node would name a device of the guest's numbering, not the host's disk.
func notBlockDevice(m specs.Mount) error {
	var st unix.Stat_t
	if err := unix.Stat(m.Source, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return nil //nolint:nilerr // not a block device; sharing reports a missing source
	}
	return fmt.Errorf("mount %s: bind mount of block device %s: a host device node cannot be shared with the VM; pass it in linux.devices or mount it with its file system type: %w",
		m.Destination, m.Source, errdefs.ErrInvalidArgument)
}

// bindWords are the mount options of a disk mount that apply to the container's bind of
// the guest's mount; the others are the file system's and go to the guest's mount.
var bindWords = []string{
	"ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec", "noatime", "atime",
	"nodiratime", "diratime", "relatime", "norelatime", "strictatime",
	"private", "rprivate", "shared", "rshared", "slave", "rslave", "unbindable", "runbindable",
}

// splitDiskOptions splits a disk mount's options into the file system's (for the guest's
// one mount of the disk, shared by every container using it) and the bind's (per
// container). "bind", "rbind", "defaults" and "loop" (a file is attached as a disk of its
// own, no loop device is made) are dropped.
func splitDiskOptions(opts []string) (fs, bind []string) {
	for _, o := range opts {
		switch {
		case o == "bind" || o == "rbind" || o == "defaults" || o == "loop" || o == "":
		case slices.Contains(bindWords, o):
			bind = append(bind, o)
		default:
			fs = append(fs, o)
		}
	}
	return fs, bind
}

// acquireDisk attaches the host device or file dev (at hostPath) or takes another
// reference to it when it is attached already. A disk attached read-only cannot be taken
// read-write.
func (s *Sandbox) acquireDisk(ctx context.Context, dev diskKey, hostPath string, readOnly bool) (*attachedDisk, error) {
	h, ok := s.vm.(hypervisor.DiskHotplugger)
	if !ok {
		return nil, fmt.Errorf("hypervisor %s cannot attach disks: %w", s.cfg.Hypervisor, errdefs.ErrNotImplemented)
	}
	s.disks.mu.Lock()
	defer s.disks.mu.Unlock()
	if d, ok := s.disks.byKey[dev]; ok {
		if d.readOnly && !readOnly {
			return nil, fmt.Errorf("device %s is attached read-only for another container; it cannot be used read-write too: %w", hostPath, errdefs.ErrFailedPrecondition)
		}
		d.refs++
		return d, nil
	}
	flag := os.O_RDWR
	if readOnly {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(hostPath, flag|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", hostPath, err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, fmt.Errorf("stat %s: %w", hostPath, err)
	}
	if mode := st.Mode & unix.S_IFMT; (mode != unix.S_IFBLK && mode != unix.S_IFREG) || keyOf(&st) != dev {
		return nil, fmt.Errorf("%s changed since it was looked up (want %+v): %w", hostPath, dev, errdefs.ErrInvalidArgument)
	}
	size, err := hostSize(f, &st)
	if err != nil {
		return nil, fmt.Errorf("size of %s: %w", hostPath, err)
	}
	id := fmt.Sprintf("disk%d", s.disks.next)
	s.disks.next++
	addr, err := h.AttachDisk(ctx, hypervisor.Disk{ID: id, File: f, ReadOnly: readOnly})
	if err != nil {
		return nil, fmt.Errorf("attach %s: %w", hostPath, err)
	}
	d := &attachedDisk{id: id, addr: addr, readOnly: readOnly, size: size, refs: 1}
	if s.disks.byKey == nil {
		s.disks.byKey = map[diskKey]*attachedDisk{}
	}
	s.disks.byKey[dev] = d
	log.G(ctx).WithField("disk", id).WithField("device", hostPath).WithField("pci", addr.PCIPath).Debug("disk attached")
	return d, nil
}

// releaseDisk drops a reference to the disk of dev and detaches it after the last. With
// the VM gone there is nothing to detach.
func (s *Sandbox) releaseDisk(ctx context.Context, dev diskKey) error {
	s.disks.mu.Lock()
	defer s.disks.mu.Unlock()
	d, ok := s.disks.byKey[dev]
	if !ok {
		return nil
	}
	d.refs--
	if d.refs > 0 {
		return nil
	}
	delete(s.disks.byKey, dev)
	if !s.vmAlive() {
		return nil
	}
	h, ok := s.vm.(hypervisor.DiskHotplugger)
	if !ok {
		return nil
	}
	if err := h.DetachDisk(ctx, d.id); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("detach disk %s: %w", d.id, err)
	}
	return nil
}

// releaseDisks releases every device c holds.
func (s *Sandbox) releaseDisks(ctx context.Context, c *Container) error {
	var errs []error
	for i := len(c.disks) - 1; i >= 0; i-- {
		if err := s.releaseDisk(ctx, c.disks[i]); err != nil {
			errs = append(errs, err)
		}
	}
	c.disks = nil
	return errors.Join(errs...)
}

// hostBlockPath finds the host's node of block device major:minor: the kernel's name from
// sysfs, under /dev.
func hostBlockPath(major, minor int64) (string, error) {
	p := fmt.Sprintf("%s/%d:%d/uevent", sysDevBlock, major, minor)
	data, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("no block device %d:%d on the host: %w", major, minor, errdefs.ErrNotFound)
	}
	if err != nil {
		return "", err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if name, ok := strings.CutPrefix(sc.Text(), "DEVNAME="); ok && name != "" && !strings.Contains(name, "..") {
			return "/dev/" + name, nil
		}
	}
	return "", fmt.Errorf("block device %d:%d has no name in %s: %w", major, minor, p, errdefs.ErrNotFound)
}

// DiskStats is the usage of the file system the guest mounted from the host device or
// image file at hostPath (a disk mount's source), which must be attached to the VM.
func (s *Sandbox) DiskStats(ctx context.Context, hostPath string) (*agentv1.VolumeStatsResponse, error) {
	var st unix.Stat_t
	if err := unix.Stat(hostPath, &st); err != nil {
		return nil, fmt.Errorf("disk stats: %s: %w", hostPath, err)
	}
	s.disks.mu.Lock()
	d, ok := s.disks.byKey[keyOf(&st)]
	var id string
	if ok {
		id = d.id
	}
	s.disks.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("disk stats: %s is not attached to sandbox %s: %w", hostPath, s.id, errdefs.ErrNotFound)
	}
	resp, err := s.agent.VolumeStats(ctx, path.Join(guestDiskDir, id))
	if err != nil {
		return nil, fmt.Errorf("disk stats of %s (%s): %w", hostPath, id, err)
	}
	return resp, nil
}

// hostSize is the size in bytes of f, a regular file or a block device st describes.
func hostSize(f *os.File, st *unix.Stat_t) (uint64, error) {
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return uint64(st.Size), nil //nolint:gosec // a file's size is not negative
	}
	n, err := f.Seek(0, io.SeekEnd) // a block device's end is its size
	if err != nil {
		return 0, fmt.Errorf("seek to the end: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, fmt.Errorf("seek to the start: %w", err)
	}
	return uint64(n), nil //nolint:gosec // an offset from lseek is not negative
}

// ResizeDisk grows the disk of the host device or image file at hostPath (attached to the
// VM and mounted by the guest) to size bytes, then the file system the guest mounted from
// it. The disk does not shrink. An image file grows with the disk (QEMU extends it); a
// block device must already be at least size bytes (grown on the host first). A size
// equal to the disk's grows only the file system, so a failed resize can be retried.
func (s *Sandbox) ResizeDisk(ctx context.Context, hostPath string, size uint64) error {
	if size == 0 || size%512 != 0 {
		return fmt.Errorf("resize %s: size %d bytes is not a positive multiple of 512: %w", hostPath, size, errdefs.ErrInvalidArgument)
	}
	r, ok := s.vm.(hypervisor.DiskResizer)
	if !ok {
		return fmt.Errorf("resize %s: hypervisor %s cannot resize disks: %w", hostPath, s.cfg.Hypervisor, errdefs.ErrNotImplemented)
	}
	id, err := s.resizeDisk(ctx, r, hostPath, size)
	if err != nil {
		return err
	}
	if err := s.agent.ResizeVolume(ctx, path.Join(guestDiskDir, id), size); err != nil {
		return fmt.Errorf("resize the file system of %s (%s) to %d bytes: %w", hostPath, id, size, err)
	}
	return nil
}

// resizeDisk checks size against the disk of hostPath and the host's file or device and
// grows the disk in the VM; it returns the disk's id.
func (s *Sandbox) resizeDisk(ctx context.Context, r hypervisor.DiskResizer, hostPath string, size uint64) (string, error) {
	f, err := os.OpenFile(hostPath, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("resize: %w", err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return "", fmt.Errorf("resize: stat %s: %w", hostPath, err)
	}
	host, err := hostSize(f, &st)
	if err != nil {
		return "", fmt.Errorf("resize: size of %s: %w", hostPath, err)
	}
	s.disks.mu.Lock()
	defer s.disks.mu.Unlock()
	d, ok := s.disks.byKey[keyOf(&st)]
	switch {
	case !ok:
		return "", fmt.Errorf("resize: %s is not attached to sandbox %s: %w", hostPath, s.id, errdefs.ErrNotFound)
	case d.readOnly:
		return "", fmt.Errorf("resize: %s is attached read-only: %w", hostPath, errdefs.ErrFailedPrecondition)
	case size < d.size:
		return "", fmt.Errorf("resize %s: size %d bytes is smaller than the disk's %d bytes; disks are not shrunk: %w", hostPath, size, d.size, errdefs.ErrInvalidArgument)
	case st.Mode&unix.S_IFMT == unix.S_IFBLK && size > host:
		return "", fmt.Errorf("resize %s: size %d bytes is larger than the block device's %d bytes; grow the device on the host first: %w", hostPath, size, host, errdefs.ErrFailedPrecondition)
	case st.Mode&unix.S_IFMT != unix.S_IFBLK && size < host:
		return "", fmt.Errorf("resize %s: size %d bytes is smaller than the image file's %d bytes, which would be cut: %w", hostPath, size, host, errdefs.ErrInvalidArgument)
	}
	if size > d.size {
		if err := r.ResizeDisk(ctx, d.id, size); err != nil {
			return "", fmt.Errorf("resize %s: %w", hostPath, err)
		}
		d.size = size
	}
	return d.id, nil
}
