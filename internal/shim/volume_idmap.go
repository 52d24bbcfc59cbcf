package shim

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/log"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/vessel-containers/vessel/internal/idrange"
	"github.com/vessel-containers/vessel/internal/oci"
	"github.com/vessel-containers/vessel/internal/sandbox"
)

// volumeDir is where mountOverlayVolumes mounts the idmapped overlays shared instead of
// volumes on overlays: in the bundle, beside idmapDir, named after the container.
func (c *container) volumeDir() string { return filepath.Join(c.bundle, ".vessel-volumes-"+c.id) }

// mountOverlayVolumes presents each bind volume of plan whose source is inside an overlay
// (containerd's CRI image volumes) to a VMM that reaches files with their host owners
// (hypervisor.vmm_file_ids = "container"): an overlay cannot be idmapped itself, only its
// layers, so a read-only, nosuid, nodev overlay of that overlay's layers (its upper
// directory, if any, and its lower layers, all as lower layers; overlayLayers) is
// mounted at <volumeDir>/<index> with every layer idmapped into ids, and the volume's
// source becomes the same path below it. It returns the indexes of plan.Mounts so
// presented: their sources show host owners already (sandbox.ContainerConfig.
// IDMappedSources). Only read-only volumes are presented so; a writable one is left to
// the share, which refuses it. A recursive bind of a source with submounts is refused: the new
// overlay has none. On failure nothing is left mounted; unmountVolumes removes the rest.
func (c *container) mountOverlayVolumes(plan *oci.Container, ids idrange.Range) (map[int]bool, error) {
	var presented map[int]bool
	for i, m := range plan.Mounts {
		// A writable volume is left to the share, which refuses a source it cannot idmap:
		// the overlay of idmapped layers shown instead is read-only.
		if _, mem := plan.MemoryVolume(i); mem || !oci.IsBind(m) || oci.IsGuestKernelBind(m) || !sandbox.ReadOnlyBind(m.Options) {
			continue
		}
		var fs unix.Statfs_t
		if err := unix.Statfs(m.Source, &fs); err != nil || fs.Type != unix.OVERLAYFS_SUPER_MAGIC {
			continue // the share reports a source it cannot reach
		}
		src, err := c.mountOverlayVolume(i, m.Source, slices.Contains(m.Options, "rbind"), ids)
		if err != nil {
			return nil, fmt.Errorf("mount %s (hypervisor.vmm_file_ids shares volumes idmapped): %w", m.Destination, err)
		}
		if presented == nil {
			presented = map[int]bool{}
		}
		plan.Mounts[i].Source = src
		presented[i] = true
	}
	return presented, nil
}

// mountOverlayVolume mounts the idmapped overlay for the volume at index i whose source
// is inside an overlay, and returns the path to share instead of source.
func (c *container) mountOverlayVolume(i int, source string, recursive bool, ids idrange.Range) (string, error) {
	real, err := filepath.EvalSymlinks(source)
	if err != nil {
		return "", err
	}
	parents, err := mountinfo.GetMounts(mountinfo.ParentsFilter(real))
	if err != nil {
		return "", fmt.Errorf("mounts holding %s: %w", source, err)
	}
	var root *mountinfo.Info
	for _, p := range parents {
		// The deepest mount point holds the source; of mounts stacked there, the last.
		if root == nil || len(p.Mountpoint) >= len(root.Mountpoint) {
			root = p
		}
	}
	if root == nil || root.FSType != "overlay" {
		return "", fmt.Errorf("%s is on an overlay, but no overlay mount holding it is listed", source)
	}
	if recursive {
		below, err := mountinfo.GetMounts(mountinfo.PrefixFilter(real))
		if err != nil {
			return "", fmt.Errorf("mounts under %s: %w", source, err)
		}
		for _, b := range below {
			if strings.HasPrefix(b.Mountpoint, real+"/") {
				return "", fmt.Errorf("%s is on an overlay, which is shared through an overlay of its idmapped layers, but has a submount %s that a recursive bind would need", source, b.Mountpoint)
			}
		}
	}
	rel, err := filepath.Rel(root.Mountpoint, real)
	if err != nil {
		return "", err
	}
	layers, extra, err := overlayLayers(root.Mountpoint) // idmap.go
	if err != nil {
		return "", err
	}
	dir := c.volumeDir()
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return "", fmt.Errorf("directory for the idmapped volumes of %s: %w", c.id, err)
	}
	target := filepath.Join(dir, strconv.Itoa(i))
	if err := os.Mkdir(target, 0o755); err != nil {
		return "", fmt.Errorf("directory for the idmapped volume of %s: %w", c.id, err)
	}
	opts := append([]string{"lowerdir=" + strings.Join(layers, ":"), "ro", "nosuid", "nodev"}, extra...)
	om := mount.Mount{Type: "overlay", Source: "overlay", Options: append(opts, ids.MountOptions()...)}
	if err := om.Mount(target); err != nil {
		_ = os.Remove(target)
		return "", fmt.Errorf("mount the idmapped layers of the overlay at %s: %w", root.Mountpoint, err)
	}
	return filepath.Join(target, rel), nil
}

// unmountVolumes removes what mountOverlayVolumes made: every mount under volumeDir and,
// once they are all gone, the directory.
func (c *container) unmountVolumes(ctx context.Context) {
	if err := removeVolumeDir(c.volumeDir()); err != nil {
		log.G(ctx).WithError(err).WithField("id", c.id).Warn("remove the idmapped volumes")
	}
}

// removeVolumeDir unmounts everything under dir, then removes dir; nothing when dir is
// absent. A mount that stays keeps the directory.
func removeVolumeDir(dir string) error {
	if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := mount.UnmountRecursive(dir, 0); err != nil {
		return fmt.Errorf("unmount the idmapped volumes under %s: %w", dir, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}
