//go:build linux

// Package storage mounts what the sandbox and its containers need in the guest. A Storage
// request names a driver and the driver's handler mounts it: "9p" and "virtiofs" (shared
// directories from the host, source is the mount tag), "ephemeral" (a tmpfs, e.g. for
// /dev/shm, sized by its size= option), "hugetlbfs" (huge pages: the driver grows the
// guest's pool of huge pages of the storage's page size by its size before it mounts, and
// shrinks it back after the last unmount), "local" (a plain directory in the guest, no
// mount, with the mode and owner its options give), "blk" and "scsi" (a disk
// the host hot-plugged, source is its PCI path or its SCSI address "<scsi-id>:<lun>": the
// manager waits for the disk to appear and mounts it with the storage's fstype, which the
// guest kernel must know), "overlay" (an overlay over directories the agent mounted
// before, e.g. a container root built from image layers on disks: lowerdir, upperdir and
// workdir must be under the root; upperdir and workdir are made when missing).
//
// Mount points are confined under a root (/run/vessel/ in the guest): a request for any
// other path is refused, and the path is opened one component at a time without following
// any symlink (OpenDir), so a link planted in a shared directory cannot redirect a mount
// elsewhere; the mount goes onto the directory that was opened (/proc/self/fd/N), and the
// unmount onto the name in its opened parent, so nothing is checked by path and then used by
// path. Each driver accepts only its own options (driverOptions). Mounts are reference
// counted by mount point: the same storage mounted twice is mounted once and unmounted by
// its last user.
package storage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
	"github.com/vessel-containers/vessel/internal/agent/device"
	"github.com/vessel-containers/vessel/internal/tracing"
)

// DefaultRoot is the guest directory every mount point must be under.
const DefaultRoot = "/run/vessel"

// Drivers lists the storage drivers the manager handles, for capability reports.
func Drivers() []string {
	return []string{"9p", "virtiofs", "ephemeral", "hugetlbfs", "local", "blk", "scsi", "overlay"}
}

// Manager mounts and unmounts storages.
type Manager struct {
	root string
	// mount and unmount are the system calls; tests replace them to record calls.
	mount   func(source, target, fstype string, flags uintptr, data string) error
	unmount func(target string, flags int) error
	// findBlock returns the node of the disk at a PCI path once the kernel made it
	// (device.WaitBlock); filesystems lists the file systems the kernel has
	// (/proc/filesystems). Tests replace both.
	findBlock   func(ctx context.Context, driver, source string) (string, error)
	filesystems func() ([]byte, error)
	// hugePages reads, and setHugePages writes, the size of the guest's pool of huge pages
	// of pageKB KiB (vm.nr_hugepages of that size). Tests replace both.
	hugePages    func(pageKB uint64) (uint64, error)
	setHugePages func(pageKB, n uint64) error

	// mu guards mounts; it is held while the pool of huge pages changes.
	mu sync.Mutex
	// mounts by resolved mount point.
	mounts map[string]*entry
}

type entry struct {
	key  string // what was mounted, to detect a different storage on the same point
	refs int
	// mounted is false for "local" storages (a directory, nothing to unmount).
	mounted bool
	// hugePages of hugePageKB KiB were added to the guest's pool for it.
	hugePageKB, hugePages uint64
}

// NewManager returns a manager confining mount points under root.
func NewManager(root string) *Manager {
	return &Manager{
		root:    filepath.Clean(root),
		mount:   unix.Mount,
		unmount: unix.Unmount,
		findBlock: func(ctx context.Context, driver, source string) (string, error) {
			wait := device.WaitBlock
			if driver == "scsi" {
				wait = device.WaitSCSI
			}
			b, err := wait(ctx, "/sys", source)
			return b.Path(), err
		},
		filesystems:  func() ([]byte, error) { return os.ReadFile("/proc/filesystems") },
		hugePages:    readHugePages,
		setHugePages: writeHugePages,
		mounts:       make(map[string]*entry),
	}
}

// plan is what a handler decided to do.
type plan struct {
	source, fstype string
	flags          uintptr
	data           string
	// dirMode, when set, is the mode of the mount point directory, and uid and gid (-1:
	// unchanged) its owner ("local" driver).
	dirMode  os.FileMode
	uid, gid int
	// hugePages of hugePageKB KiB are reserved before the mount ("hugetlbfs" driver).
	hugePageKB, hugePages uint64
	// mount is false when the storage is only a directory.
	mount bool
}

// Mount mounts s and returns its mount point (the cleaned mount_point).
func (m *Manager) Mount(ctx context.Context, s *agentv1.Storage) (_ string, retErr error) {
	if s == nil {
		return "", fmt.Errorf("%w: storage is empty", errdefs.ErrInvalidArgument)
	}
	ctx, span := tracing.Start(ctx, "storage mount "+s.GetDriver())
	defer func() { tracing.End(span, retErr) }()
	rel, err := Rel(m.root, s.GetMountPoint())
	if err != nil {
		return "", fmt.Errorf("storage %q: mount_point: %w", s.GetDriver(), err)
	}
	target := filepath.Join(m.root, rel)
	p, err := planFor(s)
	if err != nil {
		return "", err
	}
	key := fmt.Sprintf("%s|%s|%s|%d|%s", s.GetDriver(), p.source, p.fstype, p.flags, p.data)
	if d := s.GetDriver(); d == "blk" || d == "scsi" {
		if err := m.checkBlockFS(d, p.fstype); err != nil {
			return "", err
		}
		// The slow part (waiting for the disk) runs before the lock.
		if p.source, err = m.findBlock(ctx, d, s.GetSource()); err != nil {
			return "", fmt.Errorf("%s storage %s: %w", d, s.GetSource(), err)
		}
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.mounts[target]; ok {
		if e.key != key {
			return "", fmt.Errorf("%w: %s already has a different storage mounted", errdefs.ErrAlreadyExists, target)
		}
		e.refs++
		return target, nil
	}
	if s.GetDriver() == "overlay" {
		dirs, data, err := m.overlayDirs(p.data)
		if err != nil {
			return "", err
		}
		defer closeAll(dirs)
		p.data = data
	}
	mode := p.dirMode
	if mode == 0 {
		mode = 0o755
	}
	dir, err := OpenDir(m.root, rel, mode, true)
	if err != nil {
		return "", fmt.Errorf("storage %q: mount point: %w", s.GetDriver(), err)
	}
	defer dir.Close()
	if !p.mount {
		if p.uid >= 0 || p.gid >= 0 {
			if err := dir.Chown(p.uid, p.gid); err != nil {
				return "", fmt.Errorf("chown %s to %d:%d: %w", target, p.uid, p.gid, err)
			}
		}
		if p.dirMode != 0 {
			// After the chown, which clears setuid and setgid bits.
			if err := dir.Chmod(p.dirMode); err != nil {
				return "", fmt.Errorf("chmod %s: %w", target, err)
			}
		}
		m.mounts[target] = &entry{key: key, refs: 1}
		return target, nil
	}
	if p.hugePages > 0 {
		if err := m.reserveHugePagesLocked(p.hugePageKB, p.hugePages); err != nil {
			return "", fmt.Errorf("hugetlbfs storage %s: %w", target, err)
		}
	}
	if err := m.mount(p.source, FdPath(dir), p.fstype, p.flags, p.data); err != nil {
		err = fmt.Errorf("mount %s %q on %s (options %q): %w", p.fstype, p.source, target, p.data, err)
		if p.hugePages > 0 {
			if rerr := m.releaseHugePagesLocked(p.hugePageKB, p.hugePages); rerr != nil {
				err = errors.Join(err, rerr)
			}
		}
		return "", err
	}
	log.G(ctx).WithField("driver", s.GetDriver()).Debugf("mounted %s %q on %s", p.fstype, p.source, target)
	m.mounts[target] = &entry{key: key, refs: 1, mounted: true, hugePageKB: p.hugePageKB, hugePages: p.hugePages}
	return target, nil
}

// Unmount drops one reference to the storage at mountPoint (as returned by Mount) and
// unmounts it when it was the last.
func (m *Manager) Unmount(ctx context.Context, mountPoint string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.mounts[mountPoint]
	if !ok {
		return fmt.Errorf("storage at %s: %w", mountPoint, errdefs.ErrNotFound)
	}
	e.refs--
	if e.refs > 0 {
		return nil
	}
	delete(m.mounts, mountPoint)
	if !e.mounted {
		return nil
	}
	if err := m.unmountLocked(ctx, mountPoint); err != nil {
		return err
	}
	if e.hugePages > 0 {
		return m.releaseHugePagesLocked(e.hugePageKB, e.hugePages)
	}
	return nil
}

// unmountLocked unmounts target through its parent directory, opened without following
// symlinks, and with UMOUNT_NOFOLLOW on the last component: a symlink planted at or above
// the mount point cannot make the agent unmount something else. (The parent, not the mount
// point itself: an open file on the mount would keep it busy.)
//
// Preconditions: m.mu is held.
func (m *Manager) unmountLocked(ctx context.Context, target string) error {
	rel, err := Rel(m.root, target)
	if err != nil {
		return fmt.Errorf("unmount: %w", err)
	}
	parent, err := OpenDir(m.root, filepath.Dir(rel), 0, false)
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil // the mount point's parent is gone, and the mount with it
	}
	if err != nil {
		return fmt.Errorf("unmount %s: %w", target, err)
	}
	defer parent.Close()
	path := FdPath(parent) + "/" + filepath.Base(rel)
	err = m.unmount(path, unix.UMOUNT_NOFOLLOW)
	if errors.Is(err, unix.EBUSY) {
		log.G(ctx).Warnf("unmount %s: busy, detaching it", target)
		err = m.unmount(path, unix.UMOUNT_NOFOLLOW|unix.MNT_DETACH)
	}
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", target, err)
	}
	return nil
}

// Mounted lists the mount points the manager holds.
func (m *Manager) Mounted() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.mounts))
	for k := range m.mounts {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// planFor runs the driver's handler.
func planFor(s *agentv1.Storage) (plan, error) {
	if err := checkOptions(s.GetDriver(), s.GetOptions()); err != nil {
		return plan{}, err
	}
	flags, data := ParseOptions(s.GetOptions())
	switch s.GetDriver() {
	case "9p":
		if s.GetSource() == "" {
			return plan{}, fmt.Errorf("%w: 9p storage: source (the mount tag) is empty", errdefs.ErrInvalidArgument)
		}
		if fs := s.GetFstype(); fs != "" && fs != "9p" {
			return plan{}, fmt.Errorf("%w: 9p storage: fstype %q, expected \"9p\"", errdefs.ErrInvalidArgument, fs)
		}
		if !hasOption(data, "trans") {
			data = joinData(data, "trans=virtio")
		}
		return plan{source: s.GetSource(), fstype: "9p", flags: flags, data: data, mount: true}, nil
	case "virtiofs":
		if s.GetSource() == "" {
			return plan{}, fmt.Errorf("%w: virtiofs storage: source (the mount tag) is empty", errdefs.ErrInvalidArgument)
		}
		if fs := s.GetFstype(); fs != "" && fs != "virtiofs" {
			return plan{}, fmt.Errorf("%w: virtiofs storage: fstype %q, expected \"virtiofs\"", errdefs.ErrInvalidArgument, fs)
		}
		return plan{source: s.GetSource(), fstype: "virtiofs", flags: flags, data: data, mount: true}, nil
	case "ephemeral":
		if fs := s.GetFstype(); fs != "" && fs != "tmpfs" {
			return plan{}, fmt.Errorf("%w: ephemeral storage: fstype %q, expected \"tmpfs\"", errdefs.ErrInvalidArgument, fs)
		}
		src := s.GetSource()
		if src == "" {
			src = "tmpfs"
		}
		return plan{source: src, fstype: "tmpfs", flags: flags, data: data, mount: true}, nil
	case "hugetlbfs":
		if fs := s.GetFstype(); fs != "" && fs != "hugetlbfs" {
			return plan{}, fmt.Errorf("%w: hugetlbfs storage: fstype %q, expected \"hugetlbfs\"", errdefs.ErrInvalidArgument, fs)
		}
		kb, pages, err := hugePagesOf(s.GetOptions())
		if err != nil {
			return plan{}, err
		}
		return plan{source: "none", fstype: "hugetlbfs", flags: flags, data: data, mount: true, hugePageKB: kb, hugePages: pages}, nil
	case "local":
		mode, err := modeOption(s.GetOptions())
		if err != nil {
			return plan{}, err
		}
		uid, err := idOption(s.GetOptions(), "uid")
		if err != nil {
			return plan{}, err
		}
		gid, err := idOption(s.GetOptions(), "gid")
		if err != nil {
			return plan{}, err
		}
		return plan{dirMode: mode, uid: uid, gid: gid}, nil
	case "blk", "scsi":
		if s.GetSource() == "" {
			return plan{}, fmt.Errorf("%w: %s storage: source (the disk's address) is empty", errdefs.ErrInvalidArgument, s.GetDriver())
		}
		if s.GetFstype() == "" {
			return plan{}, fmt.Errorf("%w: %s storage %s: fstype is empty (the disk's file system, e.g. ext4)", errdefs.ErrInvalidArgument, s.GetDriver(), s.GetSource())
		}
		return plan{source: s.GetSource(), fstype: s.GetFstype(), flags: flags, data: data, mount: true}, nil
	case "overlay":
		if fs := s.GetFstype(); fs != "" && fs != "overlay" {
			return plan{}, fmt.Errorf("%w: overlay storage: fstype %q, expected \"overlay\"", errdefs.ErrInvalidArgument, fs)
		}
		if !hasOption(data, "lowerdir") {
			return plan{}, fmt.Errorf("%w: overlay storage: no lowerdir option", errdefs.ErrInvalidArgument)
		}
		if hasOption(data, "upperdir") != hasOption(data, "workdir") {
			return plan{}, fmt.Errorf("%w: overlay storage: upperdir and workdir go together (options %q)", errdefs.ErrInvalidArgument, data)
		}
		return plan{source: "overlay", fstype: "overlay", flags: flags, data: data, mount: true}, nil
	case "":
		return plan{}, fmt.Errorf("%w: storage driver is empty (expected one of %s)", errdefs.ErrInvalidArgument, strings.Join(Drivers(), ", "))
	default:
		return plan{}, fmt.Errorf("%w: unknown storage driver %q (expected one of %s)", errdefs.ErrInvalidArgument, s.GetDriver(), strings.Join(Drivers(), ", "))
	}
}

// checkBlockFS refuses a file system the guest kernel does not have, or one that needs no
// device (tmpfs, proc, ...): a disk holds a block file system.
func (m *Manager) checkBlockFS(driver, fstype string) error {
	data, err := m.filesystems()
	if err != nil {
		return fmt.Errorf("%s storage: list the guest's file systems: %w", driver, err)
	}
	var have []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 1 { // no "nodev" column: a file system on a device
			have = append(have, f[0])
		}
	}
	if !slices.Contains(have, fstype) {
		return fmt.Errorf("%w: %s storage: fstype %q is not a block file system of the guest kernel (it has: %s)",
			errdefs.ErrNotImplemented, driver, fstype, strings.Join(have, ", "))
	}
	return nil
}

// mountFlags maps mount(8) option words to MS_* flags; the bool says set (true) or clear.
var mountFlags = map[string]struct {
	clear bool
	flag  uintptr
}{
	"ro":          {false, unix.MS_RDONLY},
	"rw":          {true, unix.MS_RDONLY},
	"nosuid":      {false, unix.MS_NOSUID},
	"suid":        {true, unix.MS_NOSUID},
	"nodev":       {false, unix.MS_NODEV},
	"dev":         {true, unix.MS_NODEV},
	"noexec":      {false, unix.MS_NOEXEC},
	"exec":        {true, unix.MS_NOEXEC},
	"sync":        {false, unix.MS_SYNCHRONOUS},
	"async":       {true, unix.MS_SYNCHRONOUS},
	"dirsync":     {false, unix.MS_DIRSYNC},
	"noatime":     {false, unix.MS_NOATIME},
	"atime":       {true, unix.MS_NOATIME},
	"nodiratime":  {false, unix.MS_NODIRATIME},
	"diratime":    {true, unix.MS_NODIRATIME},
	"relatime":    {false, unix.MS_RELATIME},
	"norelatime":  {true, unix.MS_RELATIME},
	"strictatime": {false, unix.MS_STRICTATIME},
	"defaults":    {false, 0},
}

// ParseOptions splits mount options into MS_* flags and the filesystem data string.
func ParseOptions(opts []string) (uintptr, string) {
	var flags uintptr
	var data []string
	for _, o := range opts {
		o = strings.TrimSpace(o)
		if o == "" {
			continue
		}
		if f, ok := mountFlags[o]; ok {
			if f.clear {
				flags &^= f.flag
			} else {
				flags |= f.flag
			}
			continue
		}
		data = append(data, o)
	}
	return flags, strings.Join(data, ",")
}

func hasOption(data, key string) bool {
	for _, o := range strings.Split(data, ",") {
		if o == key || strings.HasPrefix(o, key+"=") {
			return true
		}
	}
	return false
}

func joinData(data, opt string) string {
	if data == "" {
		return opt
	}
	return data + "," + opt
}

// modeOption reads "mode=0750" for the local driver.
func modeOption(opts []string) (os.FileMode, error) {
	for _, o := range opts {
		v, ok := strings.CutPrefix(o, "mode=")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(v, 8, 32)
		if err != nil || n > 0o7777 {
			return 0, fmt.Errorf("%w: local storage: option %q is not an octal mode", errdefs.ErrInvalidArgument, o)
		}
		return os.FileMode(n&0o777) | unixModeBits(n), nil
	}
	return 0, nil
}

// unixModeBits converts setuid/setgid/sticky bits to os.FileMode bits.
func unixModeBits(n uint64) os.FileMode {
	var m os.FileMode
	if n&0o4000 != 0 {
		m |= os.ModeSetuid
	}
	if n&0o2000 != 0 {
		m |= os.ModeSetgid
	}
	if n&0o1000 != 0 {
		m |= os.ModeSticky
	}
	return m
}

// idOption reads "uid=1000" or "gid=1000" for the local driver; -1 when it is absent.
func idOption(opts []string, key string) (int, error) {
	for _, o := range opts {
		v, ok := strings.CutPrefix(o, key+"=")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n == 1<<32-1 {
			return 0, fmt.Errorf("%w: local storage: option %q is not a numeric id", errdefs.ErrInvalidArgument, o)
		}
		return int(n), nil
	}
	return -1, nil
}
