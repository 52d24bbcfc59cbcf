package shim

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/vessel-containers/vessel/internal/idrange"
)

// idmapDir is where mountIDMapped builds the overlay an unprivileged VMM sees instead of
// a root file system directory: in the bundle, named after the container.
func (c *container) idmapDir() string { return filepath.Join(c.bundle, ".vessel-rootfs-"+c.id) }

// isOneOverlay tells whether a task's rootfs is one overlay mount (containerd's overlayfs
// snapshotter), whose layers mountRootfs idmaps itself.
func isOneOverlay(rootfs []*types.Mount) bool {
	return len(rootfs) == 1 && rootfs[0].Type == "overlay"
}

// mountIDMapped presents the directory lower (a bundle's rootfs directory, or the shim's
// mount of any snapshot that is not one overlay) to a VMM running on ids, and returns the
// path to share instead of lower. lower itself is never written: it is cloned (the mount
// at lower alone, not its submounts), the clone idmapped into ids (on-disk id N appears as
// ids' host id START+N) and made read-only, nosuid and nodev, and it becomes the lower
// layer of an overlay whose upper and work directories belong to ids' root. So the
// container sees the image's owners as on disk, and everything the guest creates,
// changes, chowns or chmods lands in the upper directory owned by ids' host ids, never
// by host root. The overlay is mounted nosuid and nodev at <idmapDir>/rootfs; idmapDir is
// mode 0700, so no host user but root reaches the upper directory by path. The
// writes stay in the upper directory, which unmountIDMapped removes with the container.
// On failure nothing is left mounted or created.
func (c *container) mountIDMapped(lower string, ids idrange.Range) (_ string, retErr error) {
	dir := c.idmapDir()
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", fmt.Errorf("present the rootfs of %s to the vmm's ids: %w", c.id, err)
	}
	defer func() {
		// A lower mount point still mounted (EBUSY) keeps the directory: the walk
		// must not reach the rootfs through it.
		if retErr != nil && removeIfPresent(filepath.Join(dir, "lower")) == nil {
			_ = os.RemoveAll(dir)
		}
	}()
	uid := int(ids.HostID(0))
	for _, d := range []string{"lower", "upper", "work", "rootfs"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			return "", fmt.Errorf("present the rootfs of %s to the vmm's ids: %w", c.id, err)
		}
	}
	for _, d := range []string{"upper", "work"} {
		if err := os.Chown(filepath.Join(dir, d), uid, uid); err != nil {
			return "", fmt.Errorf("give the rootfs %s directory of %s to the vmm's ids: %w", d, c.id, err)
		}
	}
	target := filepath.Join(dir, "rootfs")
	layers, extra, err := overlayLayers(lower)
	if err != nil {
		return "", fmt.Errorf("present the rootfs %s of %s to the vmm's ids (hypervisor.vmm_id_range): %w", lower, c.id, err)
	}
	if layers != nil {
		// An overlay (podman's rootfs) cannot be idmapped itself, only its layers: its
		// upper directory and lower layers all become lower layers of the new overlay,
		// idmapped by containerd's mount package.
		opts := append([]string{"lowerdir=" + strings.Join(layers, ":"), "upperdir=" + filepath.Join(dir, "upper"),
			"workdir=" + filepath.Join(dir, "work"), "nosuid", "nodev"}, extra...)
		m := mount.Mount{Type: "overlay", Source: "overlay", Options: append(opts, ids.MountOptions()...)}
		if err := m.Mount(target); err != nil {
			return "", fmt.Errorf("mount the idmapped layers of the rootfs %s of %s: %w", lower, c.id, err)
		}
		c.idmapped = true
		return target, nil
	}
	m := fmt.Sprintf("0:%d:%d", ids.Start, ids.Size)
	userns, err := mount.GetUsernsFD(m, m)
	if err != nil {
		return "", fmt.Errorf("user namespace for the idmapped rootfs of %s: %w", c.id, err)
	}
	defer userns.Close()
	lowerMnt := filepath.Join(dir, "lower")
	if err := mount.IDMapMountWithAttrs(lower, lowerMnt, int(userns.Fd()),
		unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV, 0); err != nil {
		return "", fmt.Errorf("idmap the rootfs %s of %s into the vmm's ids (hypervisor.vmm_id_range; its file system must take idmapped mounts): %w", lower, c.id, err)
	}
	opts := strings.Join([]string{"lowerdir=" + lowerMnt, "upperdir=" + filepath.Join(dir, "upper"), "workdir=" + filepath.Join(dir, "work")}, ",")
	mountErr := unix.Mount("overlay", target, "overlay", unix.MS_NOSUID|unix.MS_NODEV, opts)
	// The overlay keeps its own reference to the lower layer: the clone's mount point
	// goes either way.
	if err := unix.Unmount(lowerMnt, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW); err != nil {
		if mountErr == nil {
			_ = unix.Unmount(target, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
		}
		return "", fmt.Errorf("detach the idmapped lower layer of %s: %w", c.id, err)
	}
	if mountErr != nil {
		return "", fmt.Errorf("mount the idmapped rootfs overlay of %s at %s: %w", c.id, target, mountErr)
	}
	c.idmapped = true
	return target, nil
}

// unmountIDMapped removes what mountIDMapped or mountDirMapped made: the overlay or
// idmapped mount and, once it is gone, the directory with the upper layer or the work
// directory beside the upper directory it used.
func (c *container) unmountIDMapped() error {
	if !c.idmapped {
		return nil
	}
	dir := c.idmapDir()
	if err := mount.UnmountRecursive(filepath.Join(dir, "rootfs"), 0); err != nil {
		return fmt.Errorf("unmount the idmapped rootfs of %s: %w", c.id, err)
	}
	if err := removeIfPresent(filepath.Join(dir, "lower")); err != nil {
		return fmt.Errorf("remove the idmapped rootfs of %s: %w", c.id, err)
	}
	if err := c.removeWorkDir(); err != nil { // idmap_mapped.go
		return fmt.Errorf("remove the work directory of the idmapped rootfs of %s: %w", c.id, err)
	}
	if err := os.RemoveAll(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove the idmapped rootfs of %s: %w", c.id, err)
	}
	c.idmapped = false
	return nil
}

// removeIfPresent removes an empty directory or nothing: a mount point fails (EBUSY).
func removeIfPresent(p string) error {
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// overlayLayers returns the layers of the overlay mounted at dir, top first (its upper
// directory, then its lower layers, each with symlinks resolved), and the overlay options
// a mount over them needs again (metacopy, redirect_dir); nil when dir is not an overlay.
// An overlay elsewhere than at its own mount root, or with layers given as relative or
// escaped paths, is refused.
func overlayLayers(dir string) ([]string, []string, error) {
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		return nil, nil, err
	}
	if fs.Type != unix.OVERLAYFS_SUPER_MAGIC {
		return nil, nil, nil
	}
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, nil, err
	}
	infos, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(real))
	if err != nil {
		return nil, nil, err
	}
	if len(infos) == 0 || infos[len(infos)-1].FSType != "overlay" {
		return nil, nil, fmt.Errorf("%s is inside an overlay, not its mount root: only a whole overlay can be idmapped layer by layer", dir)
	}
	var upper string
	var lowers, extra []string
	for _, o := range strings.Split(infos[len(infos)-1].VFSOptions, ",") {
		k, v, _ := strings.Cut(o, "=")
		switch k {
		case "upperdir":
			upper = v
		case "lowerdir":
			lowers = strings.Split(v, ":")
		case "metacopy", "redirect_dir":
			extra = append(extra, o)
		}
	}
	layers := lowers
	if upper != "" {
		layers = append([]string{upper}, lowers...)
	}
	if len(layers) == 0 {
		return nil, nil, fmt.Errorf("the overlay at %s shows no layers", dir)
	}
	for i, l := range layers {
		if !filepath.IsAbs(l) || strings.Contains(l, `\`) {
			return nil, nil, fmt.Errorf("the overlay at %s has a layer %q that is not a plain absolute path", dir, l)
		}
		if layers[i], err = filepath.EvalSymlinks(l); err != nil {
			return nil, nil, fmt.Errorf("layer of the overlay at %s: %w", dir, err)
		}
	}
	return layers, extra, nil
}
