package shim

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/v2/core/mount"
	"golang.org/x/sys/unix"

	"github.com/vessel-containers/vessel/internal/idrange"
)

// With hypervisor.vmm_file_ids = "container" the VMM runs on the sandbox's host ids but
// reaches the container's files with the owners they have on the host, as Kubernetes
// user namespaces do: every layer of the root file system is shown to it through a
// mount idmapped into its ids (on-disk id N is the sandbox's host id START+N), the
// writable ones included. So whatever the guest creates lands where runc would put it
// (the snapshot's upper directory, the bundle's rootfs directory) with the owner runc's
// container would give it: root-owned and setuid-root files included. The host-side
// mounts are nosuid and nodev; device nodes cannot be made (the VMM has no mknod on the
// host), nor file capabilities (the VMM runs without setfcap).

// mountRootfsMapped mounts containerd's overlay snapshot rootfs (isOneOverlay) at
// c.rootfs with its lower layers and its upper directory idmapped into ids. The upper
// and work directories must be in one directory (containerd's snapshotters put them
// side by side), which is idmapped as a whole: overlayfs needs both on one mount.
func (c *container) mountRootfsMapped(rootfs []*types.Mount, ids idrange.Range) error {
	if !isOneOverlay(rootfs) {
		return fmt.Errorf("mount rootfs of %s idmapped: not one overlay mount", c.id)
	}
	var lowers, opts []string
	var upper, work string
	readOnly := false
	for _, o := range rootfs[0].Options {
		k, v, _ := strings.Cut(o, "=")
		switch k {
		case "lowerdir":
			lowers = strings.Split(v, ":")
		case "upperdir":
			upper = v
		case "workdir":
			work = v
		case "ro":
			readOnly = true
		case "rw":
		case "uidmap", "gidmap":
			return fmt.Errorf("mount rootfs of %s idmapped: the snapshot is idmapped already (%s)", c.id, k)
		default:
			opts = append(opts, o)
		}
	}
	if upper != "" && filepath.Dir(upper) != filepath.Dir(work) {
		return fmt.Errorf("mount rootfs of %s idmapped: its upper directory %s and work directory %s are not in one directory", c.id, upper, work)
	}
	if err := os.MkdirAll(c.rootfs, 0o711); err != nil {
		return fmt.Errorf("create rootfs dir of %s: %w", c.id, err)
	}
	o := mappedOverlay{lowers: lowers, upper: upper, work: work, opts: opts, readOnly: readOnly}
	if err := o.mount(c.rootfs, ids); err != nil {
		return fmt.Errorf("mount rootfs of %s at %s idmapped into the vmm's ids (hypervisor.vmm_file_ids): %w", c.id, c.rootfs, err)
	}
	c.rootfsMounted = true
	return nil
}

// mountDirMapped presents the directory dir (a bundle's rootfs directory, or the shim's
// mount of a snapshot that is not one overlay) to a VMM on ids with its host owners and
// returns the path to share instead: a writable clone of the mount at dir (not its
// submounts) idmapped into ids, nosuid and nodev, at <idmapDir>/rootfs, so the container's
// writes land in dir. A directory that is itself an overlay (podman's rootfs) cannot be
// idmapped: a second overlay is made over its layers, idmapped, with its upper directory
// as the upper directory (so the writes land there, as in podman's own) and a work
// directory of its own beside it, <upper>/../.vessel-work-<id>, removed with the
// container. On failure nothing is left mounted or created.
func (c *container) mountDirMapped(dir string, ids idrange.Range) (_ string, retErr error) {
	idir := c.idmapDir()
	if err := os.Mkdir(idir, 0o700); err != nil {
		return "", fmt.Errorf("present the rootfs of %s to the vmm's ids: %w", c.id, err)
	}
	target := filepath.Join(idir, "rootfs")
	defer func() {
		if retErr != nil && removeIfPresent(target) == nil {
			_ = os.RemoveAll(idir)
		}
	}()
	if err := os.Mkdir(target, 0o755); err != nil {
		return "", fmt.Errorf("present the rootfs of %s to the vmm's ids: %w", c.id, err)
	}
	layers, extra, err := overlayLayers(dir)
	if err != nil {
		return "", fmt.Errorf("present the rootfs %s of %s to the vmm's ids (hypervisor.vmm_file_ids): %w", dir, c.id, err)
	}
	if layers == nil {
		userns, err := ids.UserNS()
		if err != nil {
			return "", err
		}
		defer userns.Close()
		if err := mount.IDMapMountWithAttrs(dir, target, int(userns.Fd()), unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV, 0); err != nil {
			return "", fmt.Errorf("idmap the rootfs %s of %s into the vmm's ids (hypervisor.vmm_file_ids; its file system must take idmapped mounts): %w", dir, c.id, err)
		}
		c.idmapped = true
		return target, nil
	}
	upper, lowers := layers[0], layers[1:]
	if len(lowers) == 0 {
		return "", fmt.Errorf("present the rootfs %s of %s to the vmm's ids: an overlay without an upper directory and a lower layer", dir, c.id)
	}
	work := filepath.Join(filepath.Dir(upper), ".vessel-work-"+c.id)
	if err := os.Mkdir(work, 0o700); err != nil {
		return "", fmt.Errorf("work directory for the rootfs of %s: %w", c.id, err)
	}
	defer func() {
		if retErr != nil {
			_ = os.RemoveAll(work)
		}
	}()
	if err := os.WriteFile(filepath.Join(idir, workRecord), []byte(work), 0o600); err != nil {
		return "", fmt.Errorf("record the work directory of the rootfs of %s: %w", c.id, err)
	}
	o := mappedOverlay{lowers: lowers, upper: upper, work: work, opts: append(extra, "index=off")}
	if err := o.mount(target, ids); err != nil {
		return "", fmt.Errorf("mount the idmapped layers of the rootfs %s of %s (hypervisor.vmm_file_ids): %w", dir, c.id, err)
	}
	c.idmapped = true
	return target, nil
}

// workRecord, in idmapDir, names the work directory mountDirMapped made beside an
// overlay's upper directory, for unmountIDMapped to remove.
const workRecord = "workdir"

// removeWorkDir removes the work directory that workRecord in idmapDir names, if any: a
// directory named after the container, nothing else.
func (c *container) removeWorkDir() error {
	b, err := os.ReadFile(filepath.Join(c.idmapDir(), workRecord))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	work := string(b)
	if !filepath.IsAbs(work) || filepath.Base(work) != ".vessel-work-"+c.id {
		return fmt.Errorf("%s names %q, not a work directory of %s", workRecord, work, c.id)
	}
	return os.RemoveAll(work)
}

// mappedOverlay is an overlay whose layers are all shown idmapped.
type mappedOverlay struct {
	// lowers are the lower layers, top first.
	lowers []string
	// upper and work are the upper and work directories, in one directory; empty for a
	// read-only overlay.
	upper, work string
	// opts are further overlay options (key=value or a flag).
	opts []string
	// readOnly mounts the overlay read-only.
	readOnly bool
}

// mount mounts o at target, nosuid and nodev, with every layer idmapped into ids: each
// lower layer read-only and the directory holding upper and work writable, each at a
// directory of a private temporary directory (short paths: overlayfs takes at most 255
// bytes for one layer's path through fsconfig), detached and removed again once the
// overlay holds its own references. The
// overlay is created by a thread whose file system ids are ids' root, so that its own
// work in the upper layer (copy-up, whiteouts, its work directory) is done as an id the
// idmapped upper layer maps, with the capabilities it had as root.
func (o mappedOverlay) mount(target string, ids idrange.Range) (retErr error) {
	userns, err := ids.UserNS()
	if err != nil {
		return err
	}
	defer userns.Close()
	layers, err := os.MkdirTemp("", ".vessel-layers-")
	if err != nil {
		return err
	}
	var staged []string
	defer func() {
		for _, m := range staged {
			if err := unix.Unmount(m, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW); err != nil && retErr == nil {
				retErr = fmt.Errorf("detach the idmapped layer %s: %w", m, err)
			}
		}
		if len(staged) == 0 || retErr == nil {
			_ = os.RemoveAll(layers)
		}
	}()
	stageOne := func(src string, attrs uint64) (string, error) {
		dst := filepath.Join(layers, strconv.Itoa(len(staged)))
		if err := os.Mkdir(dst, 0o700); err != nil {
			return "", err
		}
		if err := mount.IDMapMountWithAttrs(src, dst, int(userns.Fd()), attrs|unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV, 0); err != nil {
			_ = os.Remove(dst)
			return "", fmt.Errorf("idmap the layer %s (its file system must take idmapped mounts): %w", src, err)
		}
		staged = append(staged, dst)
		return dst, nil
	}
	lowers := make([]string, 0, len(o.lowers))
	for _, l := range o.lowers {
		m, err := stageOne(l, unix.MOUNT_ATTR_RDONLY)
		if err != nil {
			return err
		}
		lowers = append(lowers, m)
	}
	var upper, work string
	if o.upper != "" {
		m, err := stageOne(filepath.Dir(o.upper), 0)
		if err != nil {
			return err
		}
		upper, work = filepath.Join(m, filepath.Base(o.upper)), filepath.Join(m, filepath.Base(o.work))
	}
	return asIDsRoot(ids, func() error { return o.create(target, lowers, upper, work) })
}

// create makes the overlay of the staged layers and attaches it at target.
func (o mappedOverlay) create(target string, lowers []string, upper, work string) error {
	fsfd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("fsopen overlay: %w", err)
	}
	defer unix.Close(fsfd)
	set := func(k, v string) error {
		var err error
		if v == "" {
			err = unix.FsconfigSetFlag(fsfd, k)
		} else {
			err = unix.FsconfigSetString(fsfd, k, v)
		}
		if err != nil {
			return fmt.Errorf("overlay option %s=%s: %w", k, v, err)
		}
		return nil
	}
	for _, l := range lowers {
		if err := set("lowerdir+", l); err != nil {
			return err
		}
	}
	if upper != "" {
		if err := set("upperdir", upper); err != nil {
			return err
		}
		if err := set("workdir", work); err != nil {
			return err
		}
	}
	for _, opt := range o.opts {
		k, v, _ := strings.Cut(opt, "=")
		if err := set(k, v); err != nil {
			return err
		}
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return fmt.Errorf("create the overlay: %w", err)
	}
	attrs := unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV
	if o.readOnly {
		attrs |= unix.MOUNT_ATTR_RDONLY
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, attrs)
	if err != nil {
		return fmt.Errorf("fsmount the overlay: %w", err)
	}
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("attach the overlay at %s: %w", target, err)
	}
	return nil
}

// asIDsRoot runs f on a thread of its own whose file system uid and gid are the host ids
// of ids' root, with the effective capabilities it had (setfsuid clears the file system
// ones). The thread is never given back to the runtime: it exits when f returns.
func asIDsRoot(ids idrange.Range, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // not unlocked: the thread goes with the goroutine
		id := int(ids.HostID(0))
		_, _ = unix.SetfsgidRetGid(id)
		_, _ = unix.SetfsuidRetUid(id)
		if uid, _ := unix.SetfsuidRetUid(-1); uid != id {
			errc <- fmt.Errorf("setfsuid %d: still %d", id, uid)
			return
		}
		if gid, _ := unix.SetfsgidRetGid(-1); gid != id {
			errc <- fmt.Errorf("setfsgid %d: still %d", id, gid)
			return
		}
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capget(&hdr, &data[0]); err != nil {
			errc <- fmt.Errorf("capget: %w", err)
			return
		}
		data[0].Effective, data[1].Effective = data[0].Permitted, data[1].Permitted
		if err := unix.Capset(&hdr, &data[0]); err != nil {
			errc <- fmt.Errorf("capset: %w", err)
			return
		}
		errc <- f()
	}()
	return <-errc
}
