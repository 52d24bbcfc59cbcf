package oci

import (
	"fmt"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/vessel-containers/vessel/internal/config"
)

// RootfsDisk tells whether a container's root file system, as containerd's snapshotter
// gave it (the task's rootfs mounts), is a disk: one mount of a disk file system on a host
// block device (IsDiskMount), as the devmapper snapshotter gives, or on an image file with
// the loop option, as the blockfile snapshotter (containerd 1.7 and later) gives. Then the
// sandbox attaches the device or file to the VM and the guest mounts it as the container's
// root, and the host never mounts it; the returned mount is that disk
// (Container.RootfsDisk). With hypervisor.disable_block_device_use, or any other rootfs, it
// returns nil: the rootfs is mounted on the host and shared as files.
func RootfsDisk(rootfs []specs.Mount, cfg *config.Config) *specs.Mount {
	if cfg == nil || cfg.Hypervisor.DisableBlockDeviceUse || len(rootfs) != 1 {
		return nil
	}
	if !IsDiskMount(rootfs[0]) && !isLoopImage(rootfs[0]) {
		return nil
	}
	m := rootfs[0]
	m.Destination = "/"
	m.Options = append([]string(nil), m.Options...)
	return &m
}

// isLoopImage reports whether m mounts an image file through a loop device: a disk file
// system type, the loop option and a clean absolute source.
func isLoopImage(m specs.Mount) bool {
	return !IsBind(m) && slices.Contains(diskFSTypes, m.Type) && slices.Contains(m.Options, "loop") &&
		path.IsAbs(m.Source) && path.Clean(m.Source) == m.Source
}

// DiskOverlay is a container root file system the guest builds from disks: an overlay
// whose lower layers and writable layer are disk file systems, as containerd's erofs
// snapshotter (2.1 and later, with default_size set) gives them: erofs layer files, an
// ext4 file for the writable layer, and an overlay whose options name the other mounts'
// mount points with containerd's mount templates ("{{ mount 0 }}/upper",
// "{{ overlay 1 3 }}"). The sandbox attaches every disk, the agent mounts each and then
// the overlay over them; the host mounts nothing.
type DiskOverlay struct {
	// Disks are the layer disks, in the snapshotter's order (the templates' indexes).
	Disks []specs.Mount
	// Lower are the lower directories, topmost first.
	Lower []DiskDir
	// Upper and Work are the overlay's upper and work directories: on one disk, and
	// made by the agent when missing.
	Upper, Work DiskDir
	// Options are the overlay's other options.
	Options []string
}

// DiskDir is a directory on one of DiskOverlay.Disks: Path below the disk's root ("" for
// the root itself); with Disk < 0, Path is a host directory (absolute).
type DiskDir struct {
	Disk int
	Path string
}

// RootfsDisks is RootfsDisk extended to a root built from several disks: it returns the
// single disk of the root, or the overlay over disks (DiskOverlay), or neither for a
// rootfs the shim mounts on the host and shares as files. A rootfs in containerd's
// templated form (a mount type such as "format/mkdir/overlay", options with "{{ mount N }}")
// goes to the VM as disks when every directory of its overlay is on a disk; with its
// writable layer in a host directory (the erofs snapshotter without default_size), or with
// hypervisor.disable_block_device_use, the shim mounts it on the host (HostOverlay). A
// templated form that is not an overlay over disk layers is refused with an error naming
// the mounts.
func RootfsDisks(rootfs []specs.Mount, cfg *config.Config) (*specs.Mount, *DiskOverlay, error) {
	if !IsTemplated(rootfs) {
		return RootfsDisk(rootfs, cfg), nil, nil
	}
	o, err := HostOverlay(rootfs)
	if err != nil {
		return nil, nil, err
	}
	if cfg == nil || cfg.Hypervisor.DisableBlockDeviceUse || !o.onDisks() {
		return nil, nil, nil
	}
	return nil, o, nil
}

// HostOverlay reads a templated rootfs (IsTemplated) for mounting on the host: the same
// DiskOverlay, whose directories may be host directories (DiskDir.Disk < 0).
func HostOverlay(rootfs []specs.Mount) (*DiskOverlay, error) {
	o, err := parseDiskOverlay(rootfs)
	if err != nil {
		return nil, fmt.Errorf("rootfs %s: %w", describeMounts(rootfs), err)
	}
	return o, nil
}

// onDisks reports whether every directory of the overlay is on one of its disks.
func (o *DiskOverlay) onDisks() bool {
	for _, d := range append([]DiskDir{o.Upper, o.Work}, o.Lower...) {
		if d.Disk < 0 {
			return false
		}
	}
	return true
}

// IsTemplated reports whether rootfs is in containerd's mount manager form: a mount type
// with a transform prefix ("format/", "mkdir/", "mkfs/") or an option with a template.
func IsTemplated(rootfs []specs.Mount) bool {
	for _, m := range rootfs {
		if strings.Contains(m.Type, "/") || strings.Contains(m.Source, "{{") {
			return true
		}
		for _, o := range m.Options {
			if strings.Contains(o, "{{") {
				return true
			}
		}
	}
	return false
}

// describeMounts names the mounts' types and sources, for errors.
func describeMounts(rootfs []specs.Mount) string {
	parts := make([]string, 0, len(rootfs))
	for _, m := range rootfs {
		parts = append(parts, m.Type+" "+m.Source)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

var (
	mountTemplate   = regexp.MustCompile(`^\{\{\s*mount\s+(\d+)\s*\}\}(/.*)?$`)
	overlayTemplate = regexp.MustCompile(`^\{\{\s*overlay\s+(\d+)\s+(\d+)\s*\}\}$`)
)

// mkdirOption is the mount manager's option that makes a directory before the mount.
const mkdirOption = "X-containerd.mkdir.path="

// parseDiskOverlay reads the erofs snapshotter's form: disk mounts, then one overlay
// (its type possibly prefixed with "format/" and "mkdir/") whose directories are templates
// naming those disks.
func parseDiskOverlay(rootfs []specs.Mount) (*DiskOverlay, error) {
	if len(rootfs) < 2 {
		return nil, fmt.Errorf("a templated rootfs of one mount (type %q) is not an overlay over disks: %w", rootfs[0].Type, errdefs.ErrNotImplemented)
	}
	last := rootfs[len(rootfs)-1]
	if t := strings.TrimPrefix(strings.TrimPrefix(last.Type, "format/"), "mkdir/"); t != "overlay" {
		return nil, fmt.Errorf("last mount of type %q: only an overlay (\"format/mkdir/overlay\") over disk layers is supported: %w", last.Type, errdefs.ErrNotImplemented)
	}
	o := &DiskOverlay{Disks: make([]specs.Mount, 0, len(rootfs)-1)}
	for i, m := range rootfs[:len(rootfs)-1] {
		if !isLoopImage(m) && !IsDiskMount(m) {
			return nil, fmt.Errorf("mount %d (type %q, source %q): a layer must be a disk file system on an image file with the loop option or on a block device: %w",
				i, m.Type, m.Source, errdefs.ErrNotImplemented)
		}
		m.Options = slices.Clone(m.Options)
		o.Disks = append(o.Disks, m)
	}
	dir := func(key, v string) (DiskDir, error) {
		sm := mountTemplate.FindStringSubmatch(v)
		if sm == nil {
			if path.IsAbs(v) && path.Clean(v) == v {
				return DiskDir{Disk: -1, Path: v}, nil
			}
			return DiskDir{}, fmt.Errorf("overlay %s %q: expected \"{{ mount N }}\" and a path, or a clean absolute host path: %w", key, v, errdefs.ErrInvalidArgument)
		}
		n, _ := strconv.Atoi(sm[1])
		if n >= len(o.Disks) {
			return DiskDir{}, fmt.Errorf("overlay %s %q: mount %d does not exist (%d disks): %w", key, v, n, len(o.Disks), errdefs.ErrInvalidArgument)
		}
		if p := sm[2]; p != "" && path.Clean(p) != p {
			return DiskDir{}, fmt.Errorf("overlay %s %q: the path is not clean: %w", key, v, errdefs.ErrInvalidArgument)
		}
		return DiskDir{Disk: n, Path: strings.TrimPrefix(sm[2], "/")}, nil
	}
	var mkdirs []DiskDir
	var hasUpper, hasWork bool
	for _, opt := range last.Options {
		key, val, _ := strings.Cut(opt, "=")
		switch {
		case strings.HasPrefix(opt, mkdirOption):
			p, _, _ := strings.Cut(strings.TrimPrefix(opt, mkdirOption), ":")
			d, err := dir("mkdir path", p)
			if err != nil {
				return nil, err
			}
			mkdirs = append(mkdirs, d)
		case key == "lowerdir":
			for _, l := range strings.Split(val, ":") {
				if sm := overlayTemplate.FindStringSubmatch(l); sm != nil {
					a, _ := strconv.Atoi(sm[1])
					b, _ := strconv.Atoi(sm[2])
					if a >= len(o.Disks) || b >= len(o.Disks) {
						return nil, fmt.Errorf("overlay lowerdir %q: mounts %d to %d do not all exist (%d disks): %w", l, a, b, len(o.Disks), errdefs.ErrInvalidArgument)
					}
					step := 1
					if a > b {
						step = -1
					}
					for i := a; ; i += step {
						o.Lower = append(o.Lower, DiskDir{Disk: i})
						if i == b {
							break
						}
					}
					continue
				}
				d, err := dir(key, l)
				if err != nil {
					return nil, err
				}
				o.Lower = append(o.Lower, d)
			}
		case key == "upperdir" || key == "workdir":
			d, err := dir(key, val)
			if err != nil {
				return nil, err
			}
			if key == "upperdir" {
				o.Upper, hasUpper = d, true
			} else {
				o.Work, hasWork = d, true
			}
		case strings.Contains(opt, "{{") || strings.HasPrefix(opt, "X-containerd."):
			return nil, fmt.Errorf("overlay option %q is not supported: %w", opt, errdefs.ErrNotImplemented)
		default:
			o.Options = append(o.Options, opt)
		}
	}
	if len(o.Lower) == 0 {
		return nil, fmt.Errorf("overlay has no lowerdir: %w", errdefs.ErrInvalidArgument)
	}
	if !hasUpper || !hasWork {
		return nil, fmt.Errorf("overlay without upperdir and workdir (a read-only view) is not supported as a container's root: %w", errdefs.ErrNotImplemented)
	}
	if o.Upper.Disk != o.Work.Disk {
		return nil, fmt.Errorf("overlay upperdir and workdir are on different disks (%d, %d): %w", o.Upper.Disk, o.Work.Disk, errdefs.ErrInvalidArgument)
	}
	for _, l := range o.Lower {
		if l.Disk >= 0 && l.Disk == o.Upper.Disk {
			return nil, fmt.Errorf("overlay lower layer on disk %d is also the writable layer: %w", l.Disk, errdefs.ErrInvalidArgument)
		}
	}
	for _, d := range mkdirs {
		if d != o.Upper && d != o.Work {
			return nil, fmt.Errorf("overlay mkdir of %q on disk %d: only the upper and work directories are made: %w", d.Path, d.Disk, errdefs.ErrNotImplemented)
		}
	}
	return o, nil
}

// RootfsOnDisks reports whether the container's root is built in the guest from disks
// (RootfsDisk or RootfsOverlay) rather than shared from the host.
func (c *Container) RootfsOnDisks() bool { return c.RootfsDisk != nil || c.RootfsOverlay != nil }
