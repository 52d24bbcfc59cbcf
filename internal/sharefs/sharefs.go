// Package sharefs decides how host files reach the guest: one directory per sandbox is
// exported to the VM (virtio-9p), container root filesystems and bind-mount sources are
// mounted into it, under a directory per container, and the agent mounts the export once
// at GuestMountPoint.
//
// The guest is not trusted: guest root (a container escape, a guest kernel exploit) can
// create, rename and replace anything it can write through the export. So the host never
// resolves a path inside a directory the guest can write. A sandbox directory holds:
//
//	<sandbox>/mounts              host-only tree: the host creates <container>/<name> here
//	<sandbox>/shared              the export (what the VMM opened); guest-writable
//	<sandbox>/shared/containers   the view: a read-only bind of <sandbox>/mounts
//	<sandbox>/shared/containers/<container>/<name>   a container's rootfs or volume, mounted
//
// The guest can write in the export root (nothing there is ever resolved by the host, only
// removed, without following links, once the VM is gone) and inside the rootfs and volume
// mounts themselves (which the host never resolves into, except to unmount their submounts,
// see below). It cannot change the container directories or mount targets: they live in the
// view, which is read-only, and the view itself is a mount point, which a rename or rmdir
// through the export cannot move; before every use the host checks that the name
// "containers" in the export still is the root of a read-only mount (openView). The view
// is attached after the VMM opened the export
// (Publish), because the VMM holds the export's directory open: a mount over the export
// itself would stay invisible to it, and a VM from the factory's cache brings its own
// export directory.
//
// Every host-side path operation under the sandbox directory starts from a directory fd
// and resolves with openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|RESOLVE_NO_MAGICLINKS);
// mounts are made with the mount API onto the opened target (open_tree, mount_setattr,
// move_mount), so the checked target is the one mounted on. A bind source named by the
// spec (a host path the user chose) is opened once with O_PATH and that fd is what is
// cloned, so a swap after the check does not matter (a source inside a directory the
// guest can write, such as another volume, is the caller's to make safe first, as kubelet
// does for subPath). `bind` shares the top mount only and `rbind` its submounts too, as
// runc does. Unmounting opens the mount point's
// parent the same way, checks that the name in it is the root of a mount under the tree
// being removed, and unmounts that name relative to the opened parent (on a thread with its
// own working directory, since umount2 takes no dirfd) with UMOUNT_NOFOLLOW: a submount of
// a volume sits below directories the guest can rename, so a path resolved from the
// sandbox directory at unmount time could be redirected. Mounts are removed deepest first
// without MNT_DETACH; a detach is the logged last resort for a busy mount.
//
// Propagation: the view and the clones are private when attached, so nothing mounted
// here propagates to the host's other mount namespaces, and nothing mounted later under a
// bind source reaches the guest (a clone for `rslave` or `rshared` is a slave of its
// source instead; in an idmapped one, the propagation watcher idmaps what arrives,
// propagation_linux.go). The view is then made its own peer group (shared), so a VMM in
// a mount namespace of its own holds it as a slave.
//
// Where the clones go: a file server in a mount namespace of its own (QEMU's 9p server in
// its jail, virtiofsd's file server; AttachIn) gets them attached in that namespace only,
// on its copy of the view, never in the host's: then no directory of a bind source is a
// mount point in the host's namespace (a recursive clone carries the source's submounts,
// each on a directory of the source), and a user who removes such a directory on the host
// (rmdir after umount -l, as critest does) succeeds, the kernel detaching the server's
// mount as it detaches runc's from a container's namespace. The work is done on a thread
// that enters the server's namespace (setns) and finds its copy of the view by the
// server's mount table, checked beneath the namespace's root without symlinks to be a
// read-only mount whose root is the host-only tree; mount points are still created in the
// host-only tree on the host and matched by device and inode, and unmounts there go as on
// the host (deepest first, UMOUNT_NOFOLLOW from an opened parent). A file server in the
// host's mount namespace (9p with the jail off) gets them attached on the host's view.
//
// A volume is read-only on the host side exactly as far as the container has it
// read-only, so guest root reaching the export outside the container never gets more
// write access than the container. In the guest a shared tree is one 9p file system (the
// file server crosses the host's submounts), so a read-only bind there covers the
// submounts too: `ro` (runc: the top mount only) and `rro` (the whole tree) both leave
// the container unable to write anywhere in the tree, and the host makes the whole tree
// read-only for both (mount_setattr MOUNT_ATTR_RDONLY with AT_RECURSIVE). Making only the
// top read-only for `ro` would let guest root write submounts the container cannot. A
// read-only root file system (root.readonly) is made read-only the same way, but only
// once the container is created: the container runtime in the guest creates mount points
// in it first.
package sharefs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/moby/sys/mountinfo"

	"github.com/vessel-containers/vessel/internal/procid"
)

const (
	// Tag is the 9p / virtio-fs mount tag of the sandbox export.
	Tag = "vessel-shared"
	// GuestMountPoint is where the agent mounts the export in the guest.
	GuestMountPoint = "/run/vessel/shared"

	// exportName is the exported directory in the sandbox directory.
	exportName = "shared"
	// treeName is the host-only tree in the sandbox directory.
	treeName = "mounts"
	// viewName is the read-only view of the host-only tree in the export.
	viewName = "containers"
)

// BindOptions says how a source is shared.
type BindOptions struct {
	// Recursive clones the source with its submounts (`rbind`); otherwise only the top
	// mount is shared (`bind`), and submounts show as the directories under them.
	Recursive bool
	// ReadOnly makes every mount of the shared tree read-only on the host side.
	ReadOnly bool
	// TopReadOnly makes only the top mount of the shared tree read-only (runc's `ro` on an
	// `rbind`: the submounts stay writable).
	TopReadOnly bool
	// IDMap, when set, is a user namespace the shared tree is idmapped into (every mount
	// of it, mount_setattr MOUNT_ATTR_IDMAP): a file server running as root of a namespace
	// with the same maps reads and writes the files with their host owners. The tree is
	// also made nosuid and nodev on the host side. A device node is not idmapped (its
	// file system cannot be, and it is shared read-only anyway); any other tree that
	// cannot be idmapped is refused.
	IDMap *os.File
	// Slave makes the shared tree a slave of the source's peer group (`rslave`, `rshared`):
	// mounts made on the host under the source later reach the guest. Otherwise the tree is
	// private and keeps the submounts it had when shared.
	Slave bool
}

// Share is one sandbox's export on the host.
type Share struct {
	// dir is the sandbox directory, which holds the export and the host-only tree.
	dir string
	// listable makes the host-only tree's directories readable by everyone (0755, not
	// 0711): a file server that is not host root must open them to walk through them.
	listable bool
	// server, when set, is the file server whose mount namespace shared trees are
	// attached in (AttachIn).
	server *procid.ID

	// attachMu serializes attaching and removing shares in the file server's namespace
	// with the propagation watcher's work there (propagation_linux.go).
	attachMu sync.Mutex
	// mu guards slaves.
	mu sync.Mutex
	// slaves are the idmapped slave shares in the file server's namespace, by
	// <container>/<name>, for the propagation watcher.
	slaves map[string]slaveShare
}

// AttachIn makes Bind attach shared trees in the mount namespace of the file server srv
// (a process in a mount namespace of its own that holds the view as a slave: QEMU's 9p
// server in its jail, virtiofsd's file server) and nowhere else, and SetReadOnly,
// RemoveContainer and Close act there. The host then never has a mount on a directory of
// a bind source: a user's rmdir of a directory under a source (a mount point only in the
// server's namespace) succeeds and detaches the server's mount, as it detaches runc's
// from a container's namespace. Call it before the first Bind; the server must hold its
// copy of the view (Publish).
func (s *Share) AttachIn(srv procid.ID) { s.server = &srv }

// Server is the file server AttachIn named, if any.
func (s *Share) Server() (procid.ID, bool) {
	if s.server == nil {
		return procid.ID{}, false
	}
	return *s.server, true
}

// OpenToUnprivilegedServer makes the host-only tree, and the container directories made
// in it from now on, readable by everyone, for a file server that runs as an unprivileged
// host user (it opens each directory it walks through). Their names, the container ids,
// become visible to anyone who can reach the sandbox directory.
func (s *Share) OpenToUnprivilegedServer() error {
	s.listable = true
	if err := os.Chmod(filepath.Join(s.dir, treeName), 0o755); err != nil {
		return fmt.Errorf("open the shared tree to the file server: %w", err)
	}
	return nil
}

// treeDirMode is the mode of the host-only tree's directories.
func (s *Share) treeDirMode() uint32 {
	if s.listable {
		return 0o755
	}
	return 0o711
}

// Open returns the Share of the sandbox directory dir without touching it (after a
// restart, or to clean up).
func Open(dir string) *Share { return &Share{dir: filepath.Clean(dir)} }

// Dir is the host directory exported to the guest.
func (s *Share) Dir() string { return filepath.Join(s.dir, exportName) }

// GuestPath maps a path relative to the view (as Bind returns it) to the path the guest
// sees.
func GuestPath(rel string) string { return filepath.Join(GuestMountPoint, viewName, rel) }

// validName refuses ids and names that could escape the tree.
func validName(kind, name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("invalid %s %q for the shared directory", kind, name)
	}
	return nil
}

// viewRel is a path in the view, relative to the sandbox directory.
func viewRel(parts ...string) string {
	return filepath.Join(append([]string{exportName, viewName}, parts...)...)
}

// treeRel is a path in the host-only tree, relative to the sandbox directory.
func treeRel(parts ...string) string {
	return filepath.Join(append([]string{treeName}, parts...)...)
}

// MountsUnder lists mount points at or below root, deepest first.
func MountsUnder(root string) ([]string, error) {
	infos, err := mountsUnder(root)
	if err != nil {
		return nil, err
	}
	mps := make([]string, 0, len(infos))
	for _, i := range infos {
		mps = append(mps, i.Mountpoint)
	}
	return mps, nil
}

// mountsUnder reads the mounts at or below root, deepest first; of several mounts on one
// path, the one mounted last (the one a lookup reaches) comes first.
func mountsUnder(root string) ([]*mountinfo.Info, error) {
	root = filepath.Clean(root)
	infos, err := mountinfo.GetMounts(func(i *mountinfo.Info) (skip, stop bool) {
		return !under(i.Mountpoint, root), false
	})
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	sortDeepestFirst(infos)
	return infos, nil
}

// sortDeepestFirst orders mounts as read from a mount table deepest first; of several
// mounts on one path, the one mounted last (the one a lookup reaches) comes first.
func sortDeepestFirst(infos []*mountinfo.Info) {
	slices.Reverse(infos)
	slices.SortStableFunc(infos, func(a, b *mountinfo.Info) int {
		return strings.Count(b.Mountpoint, "/") - strings.Count(a.Mountpoint, "/")
	})
}

// under reports whether p is root or a path below it.
func under(p, root string) bool {
	return p == root || strings.HasPrefix(p, root+"/") || root == "/"
}

// Publish attaches the read-only view of the host-only tree in the export. Call it once
// the VMM has the export open and before the guest mounts it (no untrusted code has run
// in the guest yet): it refuses an export that already has an entry of the view's name.
func (s *Share) Publish(ctx context.Context) error {
	return s.publish(ctx)
}

// Published tells whether the view is in the export (Publish ran, here or, for a VM
// from the factory's cache, in the directory the export came from).
func (s *Share) Published() bool { return s.published() }

// Unpublish takes the view out of the export again, before any container was shared
// (a sandbox that takes a VM from the factory's cache takes its export, view included).
func (s *Share) Unpublish(ctx context.Context) error { return s.unpublish(ctx) }

// Bind mounts the host path src (a directory or a file) into the view as
// <containerID>/<name> and returns the path relative to the view (GuestPath maps it).
func (s *Share) Bind(ctx context.Context, containerID, name, src string, opts BindOptions) (string, error) {
	if err := validName("container id", containerID); err != nil {
		return "", err
	}
	if err := validName("share name", name); err != nil {
		return "", err
	}
	if err := s.bind(ctx, containerID, name, src, opts); err != nil {
		return "", fmt.Errorf("share %s as %s/%s: %w", src, containerID, name, err)
	}
	return filepath.Join(containerID, name), nil
}

// SetReadOnly makes a shared tree read-only (every mount of it), for a read-only root
// file system once the container is set up.
func (s *Share) SetReadOnly(ctx context.Context, containerID, name string) error {
	if err := validName("container id", containerID); err != nil {
		return err
	}
	if err := validName("share name", name); err != nil {
		return err
	}
	if err := s.setReadOnly(ctx, containerID, name); err != nil {
		return fmt.Errorf("make %s/%s read-only: %w", containerID, name, err)
	}
	return nil
}

// RevokeWritesIn makes every tree shared for a container read-only in the mount namespace
// of process pid, the file server, before RemoveContainer: a file server that works by
// the descriptors it holds for what the guest looked up (virtiofsd) keeps reaching the
// trees after they were unmounted, which can then only be detached; read-only, the guest
// can no longer write there. A name that is not a mount point there is skipped.
func (s *Share) RevokeWritesIn(ctx context.Context, pid int, containerID string) error {
	if err := validName("container id", containerID); err != nil {
		return err
	}
	names, err := s.containerShares(containerID)
	if err != nil || len(names) == 0 {
		return err
	}
	srv, err := procid.Of(pid)
	if err == nil {
		err = s.setReadOnlyInServer(srv, containerID, names, true)
	}
	if err != nil {
		return fmt.Errorf("make the shares of %s read-only for the file server (pid %d): %w", containerID, pid, err)
	}
	return nil
}

// RemoveContainer unmounts and removes everything shared for one container. It is safe
// to call for a container with nothing shared.
func (s *Share) RemoveContainer(ctx context.Context, containerID string) error {
	if err := validName("container id", containerID); err != nil {
		return err
	}
	return s.removeContainer(ctx, containerID)
}

// Close unmounts every mount under the sandbox directory and removes the export and the
// host-only tree. It is safe to call on a partly torn down or missing share. The VM must
// be stopped: what the guest left in the export is removed.
func (s *Share) Close(ctx context.Context) error {
	return s.close(ctx)
}
