package jail

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// enterRoot builds r and makes it the calling process's root. The process is in a mount
// namespace of its own (see Spec.Root):
//
//  1. the namespace's mounts become slaves, so nothing done here reaches the host and
//     mounts the host adds later still arrive;
//  2. every path of r is cloned (open_tree) from the host's tree while it is still
//     visible;
//  3. a new tmpfs (fsopen, not yet attached) gets the same directory or file at each
//     path, and each clone is moved onto it there;
//  4. the tmpfs is attached over r.Scratch, the process pivots into it and detaches the
//     old root, and the new root becomes read-only, nosuid and nodev.
//
// Clones keep the host's mount flags; read-only ones and /proc become read-only (they
// can only gain flags in a user namespace, never lose locked ones).
func enterRoot(r *Root) error {
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
			unix.Close(c.fd)
		}
	}()
	add := func(path string, recursive, readOnly bool) error {
		flags := uint(unix.OPEN_TREE_CLONE | unix.OPEN_TREE_CLOEXEC)
		if recursive {
			flags |= unix.AT_RECURSIVE
		}
		fd, err := unix.OpenTree(unix.AT_FDCWD, path, flags)
		if err != nil {
			return fmt.Errorf("root: clone %s: %w", path, err)
		}
		clones = append(clones, clone{path: path, fd: fd})
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return fmt.Errorf("root: stat %s: %w", path, err)
		}
		clones[len(clones)-1].dir = st.Mode&unix.S_IFMT == unix.S_IFDIR
		if readOnly {
			at := uint(unix.AT_EMPTY_PATH)
			if recursive {
				at |= unix.AT_RECURSIVE
			}
			if err := unix.MountSetattr(fd, "", at, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID}); err != nil {
				return fmt.Errorf("root: make %s read-only: %w", path, err)
			}
		}
		return nil
	}
	for _, p := range r.ReadOnly {
		if err := add(p, false, true); err != nil {
			return err
		}
	}
	for _, p := range r.Recursive {
		if err := add(p, true, true); err != nil {
			return err
		}
	}
	for _, p := range r.Writable {
		if err := add(p, true, false); err != nil {
			return err
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

	for _, c := range clones {
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

	if err := unix.MoveMount(newRoot, "", unix.AT_FDCWD, r.Scratch, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("root: attach the new root over %s: %w", r.Scratch, err)
	}
	if err := unix.Chdir(r.Scratch); err != nil {
		return fmt.Errorf("root: %w", err)
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
