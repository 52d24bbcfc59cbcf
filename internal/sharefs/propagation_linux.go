package sharefs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/log"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// Mounts that reach an idmapped share by propagation.
//
// A share made with BindOptions.Slave is a slave of its source: a mount the host makes
// under the source later reaches the file server's namespace as a copy of the host's
// mount, which keeps the host's (absent) idmapping. In a share with BindOptions.IDMap the
// file server would see that mount's files with their host owners unmapped. The watcher
// (WatchPropagation) covers each such copy, as it arrives, with an idmapped clone of it
// (and of its submounts) attached on top of it at the same place, so the file server sees
// the clone; when the copy goes (the host unmounted its original, and the unmount
// propagated), the kernel moves the clone down onto the copy's parent, and the watcher
// unmounts it, so the container loses the mount as it would under runc.

// slaveShare is what the watcher needs of an idmapped slave share.
type slaveShare struct {
	// userns is the user namespace the share is idmapped into (a duplicate, closed with
	// the share).
	userns *os.File
	// readOnly makes the covering clones read-only (the share is read-only throughout).
	readOnly bool
}

// noteSlaveShare records an idmapped slave share for the watcher.
func (s *Share) noteSlaveShare(containerID, name string, opts BindOptions) error {
	if !opts.Slave || opts.IDMap == nil || s.server == nil {
		return nil
	}
	fd, err := unix.FcntlInt(opts.IDMap.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("keep the share's user namespace: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.slaves == nil {
		s.slaves = map[string]slaveShare{}
	}
	s.slaves[filepath.Join(containerID, name)] = slaveShare{userns: os.NewFile(uintptr(fd), "userns"), readOnly: opts.ReadOnly}
	return nil
}

// forgetSlaveShares drops the records of a container's slave shares (all with "").
//
// Preconditions: s.mu is held.
func (s *Share) forgetSlaveShares(containerID string) {
	for k, v := range s.slaves {
		if containerID == "" || strings.HasPrefix(k, containerID+"/") {
			v.userns.Close()
			delete(s.slaves, k)
		}
	}
}

// WatchPropagation starts the watcher that keeps mounts propagated into idmapped slave
// shares idmapped (see above) in the file server's namespace (AttachIn), and returns
// its stop function, which waits for it to end. Without a file server it does nothing.
//
// It wakes on the kernel's notice of a mount attached to or detached from the file
// server's mount namespace (fanotify FAN_MNT_ATTACH and FAN_MNT_DETACH on a mount
// namespace mark, Linux 6.15), propagated ones included; a kernel without them is
// refused with the error, and propagated mounts then stay as the kernel copies them.
// (The mount table's POLLPRI, the older notice, misses propagated unmounts.)
func (s *Share) WatchPropagation(ctx context.Context) (stop func(), err error) {
	if s.server == nil {
		return func() {}, nil
	}
	ns, err := os.Open(fmt.Sprintf("/proc/%d/ns/mnt", s.server.Pid))
	if err != nil {
		return nil, fmt.Errorf("watch the file server's mounts: %w", err)
	}
	defer ns.Close()
	if !s.server.Alive() {
		return nil, fmt.Errorf("watch the file server's mounts: file server %s is gone", s.server)
	}
	fd, err := unix.FanotifyInit(unix.FAN_CLOEXEC|unix.FAN_NONBLOCK|unix.FAN_REPORT_MNT, unix.O_RDONLY)
	if err != nil {
		return nil, fmt.Errorf("watch the file server's mounts: fanotify with mount events (Linux 6.15): %w", err)
	}
	notify := os.NewFile(uintptr(fd), "fanotify")
	if err := unix.FanotifyMark(fd, unix.FAN_MARK_ADD|unix.FAN_MARK_MNTNS, unix.FAN_MNT_ATTACH|unix.FAN_MNT_DETACH, int(ns.Fd()), ""); err != nil {
		notify.Close()
		return nil, fmt.Errorf("watch the file server's mounts: mark its mount namespace: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		notify.Close()
		return nil, fmt.Errorf("watch the file server's mounts: %w", err)
	}
	done := make(chan struct{})
	go func() { // owner: the caller, through stop
		defer close(done)
		s.watch(ctx, notify, r)
	}()
	stop = func() {
		w.Close()
		<-done
		r.Close()
		notify.Close()
	}
	return stop, nil
}

// watch reconciles the shares each time mounts come or go in the file server's
// namespace, until stopR is readable (closed). A reconciliation that fails is logged;
// the next change tries again.
func (s *Share) watch(ctx context.Context, notify, stopR *os.File) {
	covers := map[int]int{} // clone's mount id → id of the propagated mount it covers
	buf := make([]byte, 4096)
	for {
		fds := []unix.PollFd{
			{Fd: int32(notify.Fd()), Events: unix.POLLIN},
			{Fd: int32(stopR.Fd()), Events: unix.POLLIN},
		}
		if _, err := unix.Poll(fds, -1); err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			log.G(ctx).WithError(err).Error("watching the file server's mounts failed; mounts propagated into shared volumes are no longer idmapped")
			return
		}
		if fds[1].Revents != 0 {
			return
		}
		if fds[0].Revents&unix.POLLIN == 0 {
			continue
		}
		// The events only say that something changed: reconcile reads the mount table.
		for {
			if _, err := unix.Read(int(notify.Fd()), buf); err != nil {
				break // EAGAIN: drained
			}
		}
		if !s.server.Alive() {
			return
		}
		if err := s.reconcile(ctx, covers); err != nil {
			log.G(ctx).WithError(err).Warn("idmap mounts propagated into shared volumes")
		}
	}
}

// reconcile covers every propagated mount of an idmapped slave share that lookups reach
// with an idmapped clone, and unmounts the clones whose propagated mount is gone.
func (s *Share) reconcile(ctx context.Context, covers map[int]int) error {
	s.attachMu.Lock()
	defer s.attachMu.Unlock()
	s.mu.Lock()
	shares := make(map[string]slaveShare, len(s.slaves))
	for k, v := range s.slaves {
		shares[k] = v
	}
	s.mu.Unlock()
	if len(shares) == 0 && len(covers) == 0 {
		return nil
	}
	return s.inServer(*s.server, func(n *serverNS) error {
		infos, err := n.mounts(n.viewPath)
		if err != nil {
			return err
		}
		present := make(map[int]*mountinfo.Info, len(infos))
		for _, i := range infos {
			present[i.ID] = i
		}
		var errs []error
		// Clones whose propagated mount went: the kernel moved them onto its parent.
		for c, m := range covers {
			if _, ok := present[m]; ok {
				continue
			}
			delete(covers, c)
			ci, ok := present[c]
			if !ok {
				continue
			}
			if err := unmountOne(ctx, n.root, strings.TrimPrefix(ci.Mountpoint, "/"), ci.Mountpoint, map[int]bool{c: true}, false, unmountHere); err != nil {
				if err := unmountOne(ctx, n.root, strings.TrimPrefix(ci.Mountpoint, "/"), ci.Mountpoint, map[int]bool{c: true}, true, unmountHere); err != nil {
					errs = append(errs, err)
				}
			}
		}
		slices.Reverse(infos) // shallowest first
		for key, sh := range shares {
			base := "/" + filepath.Join(n.viewPath, key)
			for _, i := range infos {
				if !under(i.Mountpoint, base) || slices.Contains(strings.Split(i.Options, ","), "idmapped") {
					continue
				}
				c, err := coverPropagated(n.root, i, sh)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", i.Mountpoint, err))
					continue
				}
				if c != 0 {
					covers[c] = i.ID
					log.G(ctx).WithField("mountpoint", i.Mountpoint).Debug("idmapped a mount propagated into a shared volume")
				}
			}
		}
		return errors.Join(errs...)
	})
}

// coverPropagated attaches an idmapped clone of the propagated mount i (with its
// submounts) on top of it, if a lookup of its mount point reaches it (not a mount hidden
// below another, such as one already covered), and returns the clone's mount id (0 when
// there was nothing to do).
func coverPropagated(root int, i *mountinfo.Info, sh slaveShare) (int, error) {
	rel := strings.TrimPrefix(i.Mountpoint, "/")
	fd, err := openBeneath(root, rel, unix.O_PATH, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	st, err := statxFd(fd)
	if err != nil {
		return 0, err
	}
	if !isMountRoot(st) || int(st.Mnt_id) != i.ID {
		return 0, nil
	}
	var fst unix.Stat_t
	if err := unix.Fstat(fd, &fst); err != nil {
		return 0, err
	}
	if t := fst.Mode & unix.S_IFMT; t == unix.S_IFCHR || t == unix.S_IFBLK {
		return 0, nil // a device node is not idmapped (Bind shares it read-only)
	}
	clone, err := unix.OpenTree(fd, "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH|unix.AT_RECURSIVE)
	if err != nil {
		return 0, fmt.Errorf("clone: %w", err)
	}
	defer unix.Close(clone)
	if err := unix.MountSetattr(clone, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &unix.MountAttr{
		Attr_set:  unix.MOUNT_ATTR_IDMAP | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV,
		Userns_fd: uint64(sh.userns.Fd()),
	}); err != nil {
		return 0, fmt.Errorf("idmap the clone: %w", err)
	}
	if sh.readOnly {
		if err := unix.MountSetattr(clone, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}); err != nil {
			return 0, fmt.Errorf("make the clone read-only: %w", err)
		}
	}
	if err := unix.MoveMount(clone, "", fd, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		return 0, fmt.Errorf("attach the idmapped clone: %w", err)
	}
	top, err := openBeneath(root, rel, unix.O_PATH, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(top)
	tst, err := statxFd(top)
	if err != nil {
		return 0, err
	}
	return int(tst.Mnt_id), nil
}
