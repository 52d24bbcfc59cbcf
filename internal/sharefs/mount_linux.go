package sharefs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/containerd/log"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// beneath resolves inside the starting directory, through no symlink of any kind.
const beneath = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

// New creates the export and the host-only tree in the sandbox directory dir, which must
// exist (mode 0700: only root reads container files through them). The export, the tree
// and each container's directory in it are mode 0711: in the guest the export is reached
// through them, and a container init in a user namespace (whose root is not the guest's)
// must be able to pass through them to its root file system; none of them can be listed
// but by root.
func New(dir string) (*Share, error) {
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("sandbox dir %q is not absolute", dir)
	}
	s := Open(dir)
	root, err := s.openRoot()
	if err != nil {
		return nil, err
	}
	defer unix.Close(root)
	for _, name := range []string{exportName, treeName} {
		if err := mkdirBeneath(root, name, 0o711); err != nil {
			return nil, fmt.Errorf("create %s in %s: %w", name, dir, err)
		}
	}
	return s, nil
}

// openRoot opens the sandbox directory, the start of every resolution.
func (s *Share) openRoot() (int, error) {
	fd, err := unix.Open(s.dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open sandbox dir %s: %w", s.dir, err)
	}
	return fd, nil
}

// openBeneath opens rel below dirfd without following any symlink (a symlink anywhere in
// rel, also the last component, is ELOOP); extra adds RESOLVE_ flags (RESOLVE_NO_XDEV to
// stay in dirfd's mount).
func openBeneath(dirfd int, rel string, flags int, extra uint64) (int, error) {
	fd, err := unix.Openat2(dirfd, rel, &unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC),
		Resolve: beneath | extra,
	})
	if err != nil {
		return -1, &os.PathError{Op: "openat2", Path: rel, Err: err}
	}
	return fd, nil
}

// mkdirBeneath creates the directory rel below dirfd (its parent resolved without
// symlinks). An existing directory is accepted; anything else there is an error.
func mkdirBeneath(dirfd int, rel string, mode uint32) error {
	parent, err := openBeneath(dirfd, filepath.Dir(rel), unix.O_PATH|unix.O_DIRECTORY, unix.RESOLVE_NO_XDEV)
	if err != nil {
		return err
	}
	defer unix.Close(parent)
	err = unix.Mkdirat(parent, filepath.Base(rel), mode)
	if errors.Is(err, unix.EEXIST) {
		fd, err := openBeneath(parent, filepath.Base(rel), unix.O_PATH|unix.O_DIRECTORY, unix.RESOLVE_NO_XDEV)
		if err != nil {
			return fmt.Errorf("%s exists and is not a directory: %w", rel, err)
		}
		return unix.Close(fd)
	}
	if err != nil {
		return &os.PathError{Op: "mkdirat", Path: rel, Err: err}
	}
	return nil
}

// statxFd reads the mount id and attributes of an open file.
func statxFd(fd int) (unix.Statx_t, error) {
	var st unix.Statx_t
	err := unix.Statx(fd, "", unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID|unix.STATX_INO|unix.STATX_TYPE, &st)
	return st, err
}

func isMountRoot(st unix.Statx_t) bool {
	return st.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT != 0 && st.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0
}

func (s *Share) publish(ctx context.Context) error {
	root, err := s.openRoot()
	if err != nil {
		return err
	}
	defer unix.Close(root)
	export, err := openBeneath(root, exportName, unix.O_PATH|unix.O_DIRECTORY, unix.RESOLVE_NO_XDEV)
	if err != nil {
		return fmt.Errorf("publish the shared view: %w", err)
	}
	defer unix.Close(export)
	if err := unix.Mkdirat(export, viewName, 0o700); err != nil {
		return fmt.Errorf("publish the shared view: create %s in the export (expected nothing there): %w", viewName, err)
	}
	tree, err := openBeneath(root, treeName, unix.O_PATH|unix.O_DIRECTORY, unix.RESOLVE_NO_XDEV)
	if err != nil {
		return fmt.Errorf("publish the shared view: %w", err)
	}
	defer unix.Close(tree)
	clone, err := unix.OpenTree(tree, "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH)
	if err != nil {
		return fmt.Errorf("publish the shared view: clone %s: %w", treeName, err)
	}
	defer unix.Close(clone)
	if err := unix.MountSetattr(clone, "", unix.AT_EMPTY_PATH, &unix.MountAttr{
		Attr_set: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV, Propagation: unix.MS_PRIVATE,
	}); err != nil {
		return fmt.Errorf("publish the shared view: make it read-only: %w", err)
	}
	target, err := openBeneath(export, viewName, unix.O_PATH|unix.O_DIRECTORY, unix.RESOLVE_NO_XDEV)
	if err != nil {
		return fmt.Errorf("publish the shared view: %w", err)
	}
	defer unix.Close(target)
	if err := unix.MoveMount(clone, "", target, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		return fmt.Errorf("publish the shared view: attach it: %w", err)
	}
	// Its own peer group (it was private when attached, so nothing propagated out of it):
	// a VMM in its own mount namespace can follow it as a slave and see containers' mounts.
	view, err := openBeneath(export, viewName, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err == nil {
		err = unix.MountSetattr(view, "", unix.AT_EMPTY_PATH, &unix.MountAttr{Propagation: unix.MS_SHARED})
		unix.Close(view)
	}
	if err != nil {
		return errors.Join(fmt.Errorf("publish the shared view: make it shared: %w", err), s.unmountBeneath(ctx, viewRel()))
	}
	log.G(ctx).WithField("view", filepath.Join(s.dir, viewRel())).Debug("shared view published")
	return nil
}

func (s *Share) published() bool {
	root, view, err := s.openRootAndView()
	if err != nil {
		return false
	}
	unix.Close(view)
	unix.Close(root)
	return true
}

func (s *Share) unpublish(ctx context.Context) error {
	if err := s.unmountBeneath(ctx, viewRel()); err != nil {
		return fmt.Errorf("unpublish the shared view: %w", err)
	}
	root, err := s.openRoot()
	if err != nil {
		return err
	}
	defer unix.Close(root)
	export, err := openBeneath(root, exportName, unix.O_PATH|unix.O_DIRECTORY, unix.RESOLVE_NO_XDEV)
	if err != nil {
		return fmt.Errorf("unpublish the shared view: %w", err)
	}
	defer unix.Close(export)
	if err := unix.Unlinkat(export, viewName, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unpublish the shared view: remove %s: %w", viewName, err)
	}
	return nil
}

// openRootAndView opens the sandbox directory and the shared view beneath it; the caller
// closes both.
func (s *Share) openRootAndView() (root, view int, err error) {
	if root, err = s.openRoot(); err != nil {
		return -1, -1, err
	}
	if view, err = s.openView(root); err != nil {
		unix.Close(root)
		return -1, -1, err
	}
	return root, view, nil
}

// openView opens the view and checks that it is the read-only mount Publish attached, so
// nothing below it can have been changed by the guest.
func (s *Share) openView(root int) (int, error) {
	fd, err := openBeneath(root, viewRel(), unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return -1, fmt.Errorf("open the shared view (is it published?): %w", err)
	}
	st, err := statxFd(fd)
	var sfs unix.Statfs_t
	if err == nil {
		err = unix.Fstatfs(fd, &sfs)
	}
	switch {
	case err != nil:
		err = fmt.Errorf("stat the shared view: %w", err)
	case !isMountRoot(st):
		err = fmt.Errorf("the shared view %s is not a mount point (not published)", viewRel())
	case sfs.Flags&unix.ST_RDONLY == 0:
		err = fmt.Errorf("the shared view %s is writable, expected the read-only mount", viewRel())
	}
	if err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

func (s *Share) bind(ctx context.Context, containerID, name, src string, opts BindOptions) (retErr error) {
	// The source is the user's choice of host path: resolved once, on the host, and the
	// opened file is what gets mounted.
	srcFd, err := unix.Open(src, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: src, Err: err}
	}
	defer unix.Close(srcFd)
	var st unix.Stat_t
	if err := unix.Fstat(srcFd, &st); err != nil {
		return fmt.Errorf("stat source: %w", err)
	}
	isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR

	flags := uint(unix.OPEN_TREE_CLONE | unix.OPEN_TREE_CLOEXEC | unix.AT_EMPTY_PATH)
	var rec uint
	if opts.Recursive {
		flags |= unix.AT_RECURSIVE
		rec = unix.AT_RECURSIVE
	}
	clone, err := unix.OpenTree(srcFd, "", flags)
	if err != nil {
		return fmt.Errorf("clone source mount: %w", err)
	}
	defer unix.Close(clone)
	// Private: the source's later mounts do not reach the guest, nor the other way round.
	// Slave: the source's later mounts reach the guest; nothing goes the other way.
	prop, word := uint64(unix.MS_PRIVATE), "private"
	if opts.Slave {
		prop, word = unix.MS_SLAVE, "a slave of the source"
	}
	if err := unix.MountSetattr(clone, "", unix.AT_EMPTY_PATH|rec, &unix.MountAttr{Propagation: prop}); err != nil {
		return fmt.Errorf("make the clone %s: %w", word, err)
	}
	// A device node is shared read-only on the host side whatever the container asked: the
	// guest opens a device on its own side (the file server never opens it for the
	// guest), so only the node's metadata would travel, and a guest root that could chown
	// or chmod the host's node (a bound /dev/null, a disk) would hand it to any host user.
	// Read-only, the file server's chown and chmod fail with EROFS.
	isDev := false
	if t := st.Mode & unix.S_IFMT; t == unix.S_IFCHR || t == unix.S_IFBLK {
		opts.TopReadOnly, isDev = true, true
	}
	if opts.IDMap != nil && !isDev {
		attr := &unix.MountAttr{
			Attr_set:  unix.MOUNT_ATTR_IDMAP | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV,
			Userns_fd: uint64(opts.IDMap.Fd()),
		}
		if err := unix.MountSetattr(clone, "", unix.AT_EMPTY_PATH|rec, attr); err != nil {
			return fmt.Errorf("idmap the clone (every file system of the tree must take idmapped mounts): %w", err)
		}
	}
	if opts.ReadOnly || opts.TopReadOnly {
		at := unix.AT_EMPTY_PATH
		if opts.ReadOnly {
			at |= unix.AT_RECURSIVE
		}
		if err := unix.MountSetattr(clone, "", uint(at), &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}); err != nil {
			return fmt.Errorf("make the clone read-only: %w", err)
		}
	}

	root, view, err := s.openRootAndView()
	if err != nil {
		return err
	}
	defer unix.Close(root)
	defer unix.Close(view)
	// The mount target is made in the host-only tree and reached through the view.
	if err := mkdirBeneath(root, treeRel(containerID), s.treeDirMode()); err != nil {
		return fmt.Errorf("create the container's directory: %w", err)
	}
	cdir, err := openBeneath(root, treeRel(containerID), unix.O_PATH|unix.O_DIRECTORY, unix.RESOLVE_NO_XDEV)
	if err != nil {
		return err
	}
	defer unix.Close(cdir)
	if isDir {
		err = unix.Mkdirat(cdir, name, 0o755)
	} else {
		var f int
		f, err = unix.Openat(cdir, name, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err == nil {
			err = unix.Close(f)
		}
	}
	if err != nil {
		return fmt.Errorf("create mount point %s: %w", treeRel(containerID, name), err)
	}
	defer func() {
		if retErr != nil {
			unlinkFlags := 0
			if isDir {
				unlinkFlags = unix.AT_REMOVEDIR
			}
			_ = unix.Unlinkat(cdir, name, unlinkFlags)
		}
	}()
	made, err := openBeneath(cdir, name, unix.O_PATH, unix.RESOLVE_NO_XDEV)
	if err != nil {
		return err
	}
	defer unix.Close(made)
	if s.server != nil {
		s.attachMu.Lock()
		err := s.attachInServer(clone, made, containerID, name) // server_linux.go
		if err == nil {
			err = s.noteSlaveShare(containerID, name, opts) // propagation_linux.go
		}
		s.attachMu.Unlock()
		if err != nil {
			return err
		}
		log.G(ctx).WithField("src", src).WithField("dst", viewRel(containerID, name)).WithField("server", s.server.String()).
			WithField("recursive", opts.Recursive).WithField("readonly", opts.ReadOnly).Debug("shared with guest in the file server's mount namespace")
		return nil
	}
	// NO_XDEV: the target must not be mounted on already.
	target, err := openBeneath(view, filepath.Join(containerID, name), unix.O_PATH, unix.RESOLVE_NO_XDEV)
	if err != nil {
		return fmt.Errorf("open mount point in the shared view: %w", err)
	}
	defer unix.Close(target)
	var a, b unix.Stat_t
	if err := unix.Fstat(made, &a); err != nil {
		return err
	}
	if err := unix.Fstat(target, &b); err != nil {
		return err
	}
	if a.Dev != b.Dev || a.Ino != b.Ino {
		return fmt.Errorf("mount point %s in the shared view is not the one created in the host-only tree", filepath.Join(containerID, name))
	}
	if err := unix.MoveMount(clone, "", target, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		return fmt.Errorf("attach onto %s: %w", viewRel(containerID, name), err)
	}
	log.G(ctx).WithField("src", src).WithField("dst", filepath.Join(s.dir, viewRel(containerID, name))).
		WithField("recursive", opts.Recursive).WithField("readonly", opts.ReadOnly).Debug("shared with guest")
	return nil
}

func (s *Share) setReadOnly(_ context.Context, containerID, name string) error {
	if s.server != nil {
		return s.setReadOnlyInServer(*s.server, containerID, []string{name}, false) // server_linux.go
	}
	root, view, err := s.openRootAndView()
	if err != nil {
		return err
	}
	defer unix.Close(root)
	defer unix.Close(view)
	fd, err := openBeneath(view, filepath.Join(containerID, name), unix.O_PATH, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	st, err := statxFd(fd)
	if err != nil {
		return err
	}
	if !isMountRoot(st) {
		return fmt.Errorf("%s is not shared (not a mount point)", viewRel(containerID, name))
	}
	return unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY})
}

func (s *Share) removeContainer(ctx context.Context, containerID string) error {
	if _, err := os.Stat(s.dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	// The watcher's pass is over before the records (and their descriptors) go.
	s.attachMu.Lock()
	s.mu.Lock()
	s.forgetSlaveShares(containerID)
	s.mu.Unlock()
	err := s.unmountInServer(ctx, containerID) // server_linux.go
	s.attachMu.Unlock()
	if err != nil {
		return err
	}
	if err := s.unmountBeneath(ctx, viewRel(containerID)); err != nil {
		return err
	}
	if err := s.unmountBeneath(ctx, treeRel(containerID)); err != nil {
		return err
	}
	root, err := s.openRoot()
	if err != nil {
		return err
	}
	defer unix.Close(root)
	return removeContainerDir(root, containerID)
}

// removeContainerDir removes a container's directory from the host-only tree: it holds
// only the mount points Bind made, now empty, so nothing is removed recursively and a
// mount still in place makes it fail rather than reach into a container's files.
func removeContainerDir(root int, containerID string) error {
	tree, err := openBeneath(root, treeName, unix.O_RDONLY|unix.O_DIRECTORY, unix.RESOLVE_NO_XDEV)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unix.Close(tree)
	cdir, err := openBeneath(tree, containerID, unix.O_RDONLY|unix.O_DIRECTORY, unix.RESOLVE_NO_XDEV)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove shared dir of container %s: %w", containerID, err)
	}
	f := os.NewFile(uintptr(cdir), treeRel(containerID))
	names, err := f.Readdirnames(-1)
	if err != nil {
		f.Close()
		return fmt.Errorf("list %s: %w", treeRel(containerID), err)
	}
	var errs []error
	for _, n := range names {
		err := unix.Unlinkat(cdir, n, 0)
		if errors.Is(err, unix.EISDIR) || errors.Is(err, unix.EPERM) {
			err = unix.Unlinkat(cdir, n, unix.AT_REMOVEDIR)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", treeRel(containerID, n), err))
		}
	}
	f.Close()
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if err := unix.Unlinkat(tree, containerID, unix.AT_REMOVEDIR); err != nil {
		return fmt.Errorf("remove %s: %w", treeRel(containerID), err)
	}
	return nil
}

func (s *Share) close(ctx context.Context) error {
	if _, err := os.Stat(s.dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	// The watcher's pass is over before the records (and their descriptors) go.
	s.attachMu.Lock()
	s.mu.Lock()
	s.forgetSlaveShares("")
	s.mu.Unlock()
	err := s.unmountInServer(ctx, "") // server_linux.go
	s.attachMu.Unlock()
	if err != nil {
		return err
	}
	if err := s.unmountBeneath(ctx, "."); err != nil {
		return err
	}
	root, err := s.openRoot()
	if err != nil {
		return err
	}
	defer unix.Close(root)
	var errs []error
	if tree, err := openBeneath(root, treeName, unix.O_RDONLY|unix.O_DIRECTORY, unix.RESOLVE_NO_XDEV); err == nil {
		f := os.NewFile(uintptr(tree), treeName)
		names, err := f.Readdirnames(-1)
		f.Close()
		if err != nil {
			errs = append(errs, fmt.Errorf("list %s: %w", treeName, err))
		}
		for _, n := range names {
			if err := removeContainerDir(root, n); err != nil {
				errs = append(errs, err)
			}
		}
		if err := unix.Unlinkat(root, treeName, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("remove %s: %w", treeName, err))
		}
	} else if !errors.Is(err, unix.ENOENT) {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	// No mount is left under the sandbox directory (checked above), so this removal of
	// what the guest wrote in the export root stays in it; it follows no symlink.
	if err := os.RemoveAll(s.Dir()); err != nil {
		return fmt.Errorf("remove export %s: %w", s.Dir(), err)
	}
	return nil
}

// unmountBeneath unmounts every mount at or below rel (relative to the sandbox dir),
// deepest first; a mount that stays busy is detached as a last resort (logged).
func (s *Share) unmountBeneath(ctx context.Context, rel string) error {
	abs := filepath.Join(s.dir, rel)
	root, err := s.openRoot()
	if err != nil {
		return err
	}
	defer unix.Close(root)
	list := func() ([]*mountinfo.Info, error) { return mountsUnder(abs) }
	return unmountAll(ctx, abs, "", list, func(i *mountinfo.Info, ids map[int]bool, lazy bool) error {
		rel, err := filepath.Rel(s.dir, i.Mountpoint)
		if err != nil {
			return err
		}
		return unmountOne(ctx, root, rel, i.Mountpoint, ids, lazy, unmountAt)
	})
}

// unmountAll unmounts what list returns, deepest first, with one (given the ids of the
// listed mounts, so that it unmounts only those, and whether to detach), and lists again
// until nothing is left. A pass that unmounts nothing is retried detaching the mounts
// (logged, with where in the message); one that still unmounts nothing fails, naming
// base.
func unmountAll(ctx context.Context, base, where string, list func() ([]*mountinfo.Info, error), one func(i *mountinfo.Info, ids map[int]bool, lazy bool) error) error {
	lazy := false
	for {
		infos, err := list()
		if err != nil {
			return err
		}
		if len(infos) == 0 {
			return nil
		}
		ids := map[int]bool{}
		for _, i := range infos {
			ids[i.ID] = true
		}
		progress := false
		var errs []error
		for _, i := range infos {
			if err := one(i, ids, lazy); err != nil {
				errs = append(errs, err)
				continue
			}
			progress = true
		}
		switch {
		case progress:
		case !lazy:
			lazy = true
			log.G(ctx).WithError(errors.Join(errs...)).Warn("shared mounts stay busy" + where + "; detaching them")
		default:
			return fmt.Errorf("unmount shared mounts under %s: %w", base, errors.Join(errs...))
		}
	}
}

// unmountOne unmounts the mount on rel (its mount point mountpoint, relative to root) if
// it is one of ids (a mount below the tree being removed). The mount point's parent is
// opened beneath root without following symlinks and the mount is named relative to that
// directory (umount, unmountAt or unmountHere), with UMOUNT_NOFOLLOW: a rename of a parent
// directory by the guest cannot redirect the unmount, and the last component is a mount
// point, which the guest cannot replace.
func unmountOne(ctx context.Context, root int, rel, mountpoint string, ids map[int]bool, lazy bool, umount func(dirfd int, name string, flags int) error) error {
	if rel == "." || rel == "" {
		return fmt.Errorf("unmount %s: the starting directory itself is a mount point, not one of the share's", mountpoint)
	}
	parent, err := openBeneath(root, filepath.Dir(rel), unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return fmt.Errorf("unmount %s: %w", mountpoint, err)
	}
	defer unix.Close(parent)
	name := filepath.Base(rel)
	var st unix.Statx_t
	if err := unix.Statx(parent, name, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID, &st); err != nil {
		return fmt.Errorf("unmount %s: %w", mountpoint, err)
	}
	if !isMountRoot(st) || !ids[int(st.Mnt_id)] {
		return fmt.Errorf("unmount %s: the lookup reaches mount %d, not a mount under the tree", mountpoint, st.Mnt_id)
	}
	flags := unix.UMOUNT_NOFOLLOW
	if lazy {
		flags |= unix.MNT_DETACH
	}
	if err := umount(parent, name, flags); err != nil {
		return fmt.Errorf("unmount %s: %w", mountpoint, err)
	}
	entry := log.G(ctx).WithField("mountpoint", mountpoint)
	if lazy {
		entry.Warn("detached a busy shared mount")
	} else {
		entry.Debug("unshared")
	}
	return nil
}

// unmountAt runs umount2(name, flags) with name resolved from the directory dirfd, through
// the /proc/self/fd/<dirfd> link: umount2 has no dirfd argument, and an fd on the mount
// itself would keep it busy. Only the link to dirfd, a directory opened beneath the
// sandbox, is followed; UMOUNT_NOFOLLOW in flags keeps name from being followed.
//
// It runs on the calling goroutine's thread, unlocked: a thread that changed its working
// directory (CLONE_FS) would have to exit, and a thread's exit is a parent death for the
// children it forked (QEMU is started with Pdeathsig).
func unmountAt(dirfd int, name string, flags int) error {
	return unix.Unmount("/proc/self/fd/"+strconv.Itoa(dirfd)+"/"+name, flags)
}

// readOnlyMount makes the mount at rel beneath root read-only with its submounts.
func readOnlyMount(root int, rel string, skipMissing bool) error {
	fd, err := openBeneath(root, rel, unix.O_PATH, 0)
	if err != nil {
		if skipMissing && errors.Is(err, unix.ENOENT) {
			return nil
		}
		return err
	}
	defer unix.Close(fd)
	st, err := statxFd(fd)
	if err != nil {
		return err
	}
	if !isMountRoot(st) {
		if skipMissing {
			return nil
		}
		return fmt.Errorf("%s is not a mount point", rel)
	}
	return unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY})
}

// containerShares lists the names shared for a container (its mount points in the
// host-only tree).
func (s *Share) containerShares(containerID string) ([]string, error) {
	root, err := s.openRoot()
	if err != nil {
		return nil, err
	}
	defer unix.Close(root)
	fd, err := openBeneath(root, treeRel(containerID), unix.O_RDONLY|unix.O_DIRECTORY, unix.RESOLVE_NO_XDEV)
	if errors.Is(err, unix.ENOENT) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), containerID)
	defer f.Close()
	return f.Readdirnames(-1)
}
