package shim

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/containerd/v2/core/mount"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/vessel-containers/vessel/internal/oci"
)

// layersDir is where mountLayerOverlay mounts the layers of the overlay at c.rootfs.
func (c *container) layersDir() string { return c.rootfs + ".layers" }

// mountLayerOverlay mounts a rootfs in containerd's templated form (oci.HostOverlay: the
// erofs snapshotter's layer files and overlay, when it does not go to the VM as disks) on
// the host, as containerd's mount manager would: each layer at <rootfs>.layers/<i> (an
// image file through a loop device, which containerd's mount package frees again at
// unmount), the upper and work directories made on their layer, then the overlay at
// c.rootfs, which is shared with the guest like any other rootfs. On failure nothing is
// left mounted.
func (c *container) mountLayerOverlay(rootfs []specs.Mount) (retErr error) {
	o, err := oci.HostOverlay(rootfs)
	if err != nil {
		return fmt.Errorf("mount rootfs of %s: %w", c.id, err)
	}
	defer func() {
		if retErr != nil {
			_ = c.unmountLayers()
		}
	}()
	for i, d := range o.Disks {
		mp := filepath.Join(c.layersDir(), strconv.Itoa(i))
		if err := os.MkdirAll(mp, 0o700); err != nil {
			return fmt.Errorf("mount rootfs layer %d of %s: %w", i, c.id, err)
		}
		m := mount.Mount{Type: d.Type, Source: d.Source, Options: d.Options}
		if err := m.Mount(mp); err != nil {
			_ = os.Remove(mp)
			return fmt.Errorf("mount rootfs layer %d (%s %s) of %s: %w", i, d.Type, d.Source, c.id, err)
		}
		c.layerMounts = append(c.layerMounts, mp)
	}
	dir := func(d oci.DiskDir) string {
		if d.Disk < 0 {
			return d.Path
		}
		return filepath.Join(c.layerMounts[d.Disk], d.Path)
	}
	for _, d := range []oci.DiskDir{o.Upper, o.Work} {
		if err := os.MkdirAll(dir(d), 0o755); err != nil {
			return fmt.Errorf("mount rootfs of %s: %w", c.id, err)
		}
	}
	lower := make([]string, len(o.Lower))
	for i, l := range o.Lower {
		lower[i] = dir(l)
	}
	opts := append([]string{"lowerdir=" + strings.Join(lower, ":"), "upperdir=" + dir(o.Upper), "workdir=" + dir(o.Work)}, o.Options...)
	if err := os.MkdirAll(c.rootfs, 0o711); err != nil {
		return fmt.Errorf("create rootfs dir of %s: %w", c.id, err)
	}
	m := mount.Mount{Type: "overlay", Source: "overlay", Options: opts}
	if err := m.Mount(c.rootfs); err != nil {
		return fmt.Errorf("mount rootfs of %s at %s: %w", c.id, c.rootfs, err)
	}
	c.rootfsMounted = true
	return nil
}

// unmountLayers unmounts the layers mountLayerOverlay mounted, last first, and removes
// their directories (never recursively: a directory still mounted stays); the overlay
// over them must be unmounted already. Layers it could not unmount stay listed.
func (c *container) unmountLayers() error {
	var errs []error
	var left []string
	for i := len(c.layerMounts) - 1; i >= 0; i-- {
		mp := c.layerMounts[i]
		if err := mount.UnmountAll(mp, 0); err != nil {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mp, err))
			left = append([]string{mp}, left...)
			continue
		}
		if err := os.Remove(mp); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	c.layerMounts = left
	if len(errs) == 0 {
		if err := os.Remove(c.layersDir()); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
