package jail

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// cloneRoot clones every path of r from this process's mount namespace, in the order the
// entry takes them (ReadOnly, Recursive, Writable), as detached mounts (open_tree
// OPEN_TREE_CLONE): the caller is host root, so no directory above a path needs to be
// searchable by the ids the program runs as. Each clone is set up as the entry attaches
// it: ReadOnly and Recursive ones read-only and nosuid (Recursive ones with every
// submount), and every one a slave (mount_setattr): a clone of a shared mount would
// otherwise be a peer of the host's, so that mounts the host adds below it later still
// arrive, and nothing mounted in it ever propagates back. A detached clone vanishes,
// with all its mounts, when its last descriptor is closed; on error none is left open.
// Made in the host's namespace, the clones' flags are not locked in the program's: only
// CAP_SYS_ADMIN in its user namespace could clear them, which the entry drops with every
// capability the program does not keep.
func cloneRoot(r *Root) (_ []*os.File, retErr error) {
	var files []*os.File
	defer func() {
		if retErr != nil {
			for _, f := range files {
				_ = f.Close()
			}
		}
	}()
	add := func(path string, recursive, readOnly bool) error {
		flags := uint(unix.OPEN_TREE_CLONE | unix.OPEN_TREE_CLOEXEC)
		at := uint(unix.AT_EMPTY_PATH)
		if recursive {
			flags |= unix.AT_RECURSIVE
			at |= unix.AT_RECURSIVE
		}
		fd, err := unix.OpenTree(unix.AT_FDCWD, path, flags)
		if err != nil {
			return fmt.Errorf("jail: clone %s for the root: %w", path, err)
		}
		files = append(files, os.NewFile(uintptr(fd), path))
		attr := unix.MountAttr{Propagation: unix.MS_SLAVE}
		if readOnly {
			attr.Attr_set = unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID
		}
		if err := unix.MountSetattr(fd, "", at, &attr); err != nil {
			return fmt.Errorf("jail: set up the clone of %s for the root: %w", path, err)
		}
		return nil
	}
	for _, l := range []struct {
		paths               []string
		recursive, readOnly bool
	}{{r.ReadOnly, false, true}, {r.Recursive, true, true}, {r.Writable, true, false}} {
		for _, p := range l.paths {
			if err := add(p, l.recursive, l.readOnly); err != nil {
				return nil, err
			}
		}
	}
	return files, nil
}

// enterRoot builds r and makes it the calling process's root. The process is in a mount
// namespace of its own (see Spec.Root), and its descriptors from first on are the
// caller's clones of r's paths (cloneRoot, passed by PassRoot):
//
//  1. the namespace's mounts become slaves, so nothing done here reaches the host and
//     mounts the host adds later still arrive;
//  2. a new tmpfs (fsopen, not yet attached) gets the same directory or file at each
//     path, and each clone is moved onto it there (move_mount) and its descriptor
//     closed;
//  3. the tmpfs is attached over /, the process pivots into it and detaches the old
//     root, and the new root becomes read-only, nosuid and nodev.
//
// Only the links of r are read from the host's tree (top-level symlinks): the program's
// ids need no access to any host directory.
func enterRoot(r *Root, first int) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		return fmt.Errorf("root: make the mounts slaves: %w", err)
	}
	type clone struct {
		path string
		fd   int
		dir  bool
	}
	var clones []clone
	defer func() {
		for _, c := range clones {
			if c.fd >= 0 {
				unix.Close(c.fd)
			}
		}
	}()
	for _, p := range slices.Concat(r.ReadOnly, r.Recursive, r.Writable) {
		fd := first + len(clones)
		var st unix.Statx_t
		if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW, unix.STATX_TYPE, &st); err != nil {
			return fmt.Errorf("root: descriptor %d, the clone of %s: %w", fd, p, err)
		}
		clones = append(clones, clone{path: p, fd: fd, dir: st.Mode&unix.S_IFMT == unix.S_IFDIR})
		unix.CloseOnExec(fd)
		if st.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT == 0 || st.Attributes&unix.STATX_ATTR_MOUNT_ROOT == 0 {
			return fmt.Errorf("root: descriptor %d, the clone of %s, is not a mount's root", fd, p)
		}
	}
	links := make(map[string]string, len(r.Links))
	for _, p := range r.Links {
		target, err := os.Readlink(p)
		if err != nil {
			return fmt.Errorf("root: %w", err)
		}
		links[p] = target
	}

	fsfd, err := unix.Fsopen("tmpfs", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("root: fsopen tmpfs: %w", err)
	}
	defer unix.Close(fsfd)
	for k, v := range map[string]string{"mode": "0755", "size": "1m", "nr_inodes": "4096"} {
		if err := unix.FsconfigSetString(fsfd, k, v); err != nil {
			return fmt.Errorf("root: tmpfs %s=%s: %w", k, v, err)
		}
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return fmt.Errorf("root: create tmpfs: %w", err)
	}
	newRoot, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("root: fsmount tmpfs: %w", err)
	}
	defer unix.Close(newRoot)

	for i, c := range clones {
		rel := strings.TrimPrefix(c.path, "/")
		if err := mkdirsAt(newRoot, filepath.Dir(rel)); err != nil {
			return err
		}
		if c.dir {
			err = unix.Mkdirat(newRoot, rel, 0o755)
		} else {
			var fd int
			fd, err = unix.Openat(newRoot, rel, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o644)
			if err == nil {
				unix.Close(fd)
			}
		}
		if err != nil && !os.IsExist(err) {
			return fmt.Errorf("root: mount point %s: %w", c.path, err)
		}
		if err := unix.MoveMount(c.fd, "", newRoot, rel, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
			return fmt.Errorf("root: attach %s: %w", c.path, err)
		}
		unix.Close(c.fd)
		clones[i].fd = -1
	}
	for p, target := range links {
		rel := strings.TrimPrefix(p, "/")
		if err := mkdirsAt(newRoot, filepath.Dir(rel)); err != nil {
			return err
		}
		if err := unix.Symlinkat(target, newRoot, rel); err != nil {
			return fmt.Errorf("root: link %s -> %s: %w", p, target, err)
		}
	}

	// Over /, which every process can reach; the descriptor is the tmpfs's root, the
	// working directory pivot_root needs.
	if err := unix.MoveMount(newRoot, "", unix.AT_FDCWD, "/", unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("root: attach the new root: %w", err)
	}
	if err := unix.Fchdir(newRoot); err != nil {
		return fmt.Errorf("root: enter the new root: %w", err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("root: pivot_root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("root: detach the old root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("root: %w", err)
	}
	if err := unix.MountSetattr(unix.AT_FDCWD, "/", 0, &unix.MountAttr{
		Attr_set: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV,
	}); err != nil {
		return fmt.Errorf("root: make the new root read-only: %w", err)
	}
	return nil
}

// mkdirsAt creates rel and its parents below dirfd (0755), accepting existing ones.
func mkdirsAt(dirfd int, rel string) error {
	if rel == "." || rel == "" {
		return nil
	}
	cur := ""
	for _, part := range strings.Split(rel, "/") {
		cur = filepath.Join(cur, part)
		if err := unix.Mkdirat(dirfd, cur, 0o755); err != nil && !os.IsExist(err) {
			return fmt.Errorf("root: create %s: %w", "/"+cur, err)
		}
	}
	return nil
}
