package sharefs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/vessel-containers/vessel/internal/procid"
)

// init keeps the main goroutine on the process's main thread for the process's life, so
// that no other goroutine ever runs there. inServer's goroutines leave their threads in a
// file server's mount namespace and never unlock them: such a thread ends with its
// goroutine, except the main thread, which the Go runtime keeps (wedged) instead. A main
// thread left in a file server's namespace would change what every reader of
// /proc/self/... sees, /proc/self/mountinfo among them (the host's cgroup v1 mounts
// vanish for hostcgroup), because /proc/self names the main thread.
func init() { runtime.LockOSThread() }

// errNoServerView is the error of a file server whose mount namespace has no copy of the
// view: nothing can have been attached there.
var errNoServerView = errors.New("no copy of the shared view in the file server's mount namespace")

// serverNS is a thread in the mount namespace of a file server (see inServer).
type serverNS struct {
	// root is the namespace's root directory (where setns leaves the thread).
	root int
	// view is the server's copy of the view, checked as openView checks the host's.
	view int
	// viewPath is the view's path relative to root, as the server's mountinfo names it.
	viewPath string
	// proc is the host's /proc, and pid the server: mounts reads the server's mount table
	// through them (the namespace need not have a /proc).
	proc int
	pid  int
}

// mounts reads the server's mounts at or below rel (relative to the namespace's root),
// deepest first.
func (n *serverNS) mounts(rel string) ([]*mountinfo.Info, error) {
	fd, err := unix.Openat(n.proc, strconv.Itoa(n.pid)+"/mountinfo", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open the file server's mount table: %w", err)
	}
	f := os.NewFile(uintptr(fd), "mountinfo")
	defer f.Close()
	base := "/" + rel
	infos, err := mountinfo.GetMountsFromReader(f, func(i *mountinfo.Info) (skip, stop bool) {
		return !under(i.Mountpoint, base), false
	})
	if err != nil {
		return nil, fmt.Errorf("read the file server's mount table: %w", err)
	}
	sortDeepestFirst(infos)
	return infos, nil
}

// inServer runs fn in the mount namespace of the file server srv, on a thread of its own
// that leaves the host's mount namespace and is never used again (the goroutine ends with
// the thread locked, so the runtime exits it). The server's copy of the view is found by
// its mount point in the server's mount table (a file server's root is the export, or a
// root of its own that holds the export at some path) and then checked, beneath the
// namespace's root without symlinks, to be a read-only mount root whose directory is the
// host-only tree.
func (s *Share) inServer(srv procid.ID, fn func(n *serverNS) error) error {
	nsPath := fmt.Sprintf("/proc/%d/ns/mnt", srv.Pid)
	ns, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open the file server's mount namespace: %w", err)
	}
	defer unix.Close(ns)
	if !srv.Alive() { // checked after the open: the namespace is that process's
		return fmt.Errorf("file server %s is gone", srv)
	}
	proc, err := unix.Open("/proc", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open /proc: %w", err)
	}
	defer unix.Close(proc)
	root, err := s.openRoot()
	if err != nil {
		return err
	}
	defer unix.Close(root)
	tree, err := openBeneath(root, treeName, unix.O_PATH|unix.O_DIRECTORY, unix.RESOLVE_NO_XDEV)
	if err != nil {
		return err
	}
	var treeSt unix.Stat_t
	err = unix.Fstat(tree, &treeSt)
	unix.Close(tree)
	if err != nil {
		return fmt.Errorf("stat %s: %w", treeName, err)
	}
	n := &serverNS{proc: proc, pid: srv.Pid}
	candidates, err := n.mounts("")
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() { // owner: inServer, which waits for errc
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		errc <- func() error {
			if err := unix.Unshare(unix.CLONE_FS); err != nil {
				return fmt.Errorf("unshare fs attributes: %w", err)
			}
			if err := unix.Setns(ns, unix.CLONE_NEWNS); err != nil {
				return fmt.Errorf("enter %s: %w", nsPath, err)
			}
			var err error
			if n.root, err = unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
				return err
			}
			defer unix.Close(n.root)
			var tried []string
			for _, c := range candidates {
				if filepath.Base(c.Mountpoint) != viewName {
					continue
				}
				rel := strings.TrimPrefix(c.Mountpoint, "/")
				fd, err := openServerView(n.root, rel, treeSt)
				if err != nil {
					tried = append(tried, err.Error())
					continue
				}
				defer unix.Close(fd)
				n.view, n.viewPath = fd, rel
				return fn(n)
			}
			return fmt.Errorf("%w (%d mounts named %s there, none of them the view: %s)", errNoServerView, len(tried), viewName, strings.Join(tried, "; "))
		}()
	}()
	if err := <-errc; err != nil {
		return fmt.Errorf("in the mount namespace of file server %s: %w", srv, err)
	}
	return nil
}

// openServerView opens rel beneath root and checks that it is a read-only mount whose
// root is the host-only tree (tree).
func openServerView(root int, rel string, tree unix.Stat_t) (int, error) {
	fd, err := openBeneath(root, rel, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return -1, err
	}
	st, err := statxFd(fd)
	var sfs unix.Statfs_t
	var fst unix.Stat_t
	if err == nil {
		err = unix.Fstatfs(fd, &sfs)
	}
	if err == nil {
		err = unix.Fstat(fd, &fst)
	}
	switch {
	case err != nil:
		err = fmt.Errorf("stat %s: %w", rel, err)
	case !isMountRoot(st):
		err = fmt.Errorf("%s is not a mount point", rel)
	case sfs.Flags&unix.ST_RDONLY == 0:
		err = fmt.Errorf("%s is writable, expected the read-only view", rel)
	case fst.Dev != tree.Dev || fst.Ino != tree.Ino:
		err = fmt.Errorf("%s is not the host-only tree", rel)
	}
	if err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// attachInServer attaches clone in the file server's namespace at containerID/name of its
// view, which must be made (made, opened in the host-only tree) and not mounted on.
func (s *Share) attachInServer(clone, made int, containerID, name string) error {
	var a unix.Stat_t
	if err := unix.Fstat(made, &a); err != nil {
		return err
	}
	return s.inServer(*s.server, func(n *serverNS) error {
		// NO_XDEV: the target must not be mounted on already.
		target, err := openBeneath(n.view, filepath.Join(containerID, name), unix.O_PATH, unix.RESOLVE_NO_XDEV)
		if err != nil {
			return fmt.Errorf("open mount point in the file server's view: %w", err)
		}
		defer unix.Close(target)
		var b unix.Stat_t
		if err := unix.Fstat(target, &b); err != nil {
			return err
		}
		if a.Dev != b.Dev || a.Ino != b.Ino {
			return fmt.Errorf("mount point %s in the file server's view is not the one created in the host-only tree", filepath.Join(containerID, name))
		}
		if err := unix.MoveMount(clone, "", target, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
			return fmt.Errorf("attach onto %s: %w", filepath.Join(n.viewPath, containerID, name), err)
		}
		return nil
	})
}

// unmountInServer unmounts, in the file server's namespace, every mount below its view
// (rel "") or at or below rel in it (a container's directory), deepest first, each
// named from its opened parent with UMOUNT_NOFOLLOW; a mount that stays busy is detached
// as a last resort (logged). A server that is gone took its namespace, and the mounts in
// it, along.
func (s *Share) unmountInServer(ctx context.Context, rel string) error {
	if s.server == nil || !s.server.Alive() {
		return nil
	}
	err := s.inServer(*s.server, func(n *serverNS) error {
		base := filepath.Join(n.viewPath, rel)
		list := func() ([]*mountinfo.Info, error) {
			infos, err := n.mounts(base)
			return slices.DeleteFunc(infos, func(i *mountinfo.Info) bool { return i.Mountpoint == "/"+n.viewPath }), err
		}
		return unmountAll(ctx, base, " in the file server's namespace", list, func(i *mountinfo.Info, ids map[int]bool, lazy bool) error {
			return unmountOne(ctx, n.root, strings.TrimPrefix(i.Mountpoint, "/"), i.Mountpoint, ids, lazy, unmountHere)
		})
	})
	if errors.Is(err, errNoServerView) || (err != nil && !s.server.Alive()) {
		return nil // nothing attached there, or gone with the server
	}
	return err
}

// unmountHere runs umount2(name, flags) with name resolved from the directory dirfd, by
// changing the thread's working directory to it: for a thread of inServer, which has its
// own working directory and a namespace that may have no /proc.
func unmountHere(dirfd int, name string, flags int) error {
	if err := unix.Fchdir(dirfd); err != nil {
		return fmt.Errorf("change to the mount point's parent: %w", err)
	}
	return unix.Unmount(name, flags)
}

// setReadOnlyInServer makes the named shared trees of a container read-only in the file
// server's namespace srv, every mount of each; with skipMissing a name that is not a
// mount point there is skipped.
func (s *Share) setReadOnlyInServer(srv procid.ID, containerID string, names []string, skipMissing bool) error {
	return s.inServer(srv, func(n *serverNS) error {
		var errs []error
		for _, name := range names {
			if err := readOnlyMount(n.view, filepath.Join(containerID, name), skipMissing); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			}
		}
		return errors.Join(errs...)
	})
}
