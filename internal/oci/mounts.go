package oci

import (
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/vessel-containers/vessel/internal/bytesize"
	"github.com/vessel-containers/vessel/internal/guestdev"
)

const shmPath = "/dev/shm"

// IsBind reports whether a mount is a bind mount (type "bind" or a bind/rbind option).
func IsBind(m specs.Mount) bool {
	return m.Type == "bind" || slices.Contains(m.Options, "bind") || slices.Contains(m.Options, "rbind")
}

// IsGuestKernelBind reports whether bind mount m's source is one of the kernel's own file
// systems at its usual place: /proc (procfs) or /sys and below it (sysfs, and the cgroup
// and other kernel file systems mounted there). The container's kernel is the guest's, as
// the host's is a runc container's, so the guest binds its own instance from the same path
// (the proc of the guest's initial pid namespace, which a container without a pid
// namespace of its own shares); the host's is never shared with the VM. A path below /proc
// names host processes and is shared as any other.
func IsGuestKernelBind(m specs.Mount) bool {
	if !IsBind(m) {
		return false
	}
	p := path.Clean(m.Source)
	return p == "/proc" || p == "/sys" || strings.HasPrefix(p, "/sys/")
}

// diskFSTypes are the file systems that live on a block device, for IsDiskMount.
var diskFSTypes = []string{"ext2", "ext3", "ext4", "xfs", "btrfs", "vfat", "exfat", "f2fs", "erofs", "squashfs", "iso9660"}

// IsDiskMount reports whether a mount puts the file system of a host block device or
// image file into the container: not a bind mount, a file system type that lives on a disk,
// and a source under /dev/ or an image file with the loop option (isLoopImage). The sandbox
// attaches the device or file to the VM and the guest mounts it; the host never mounts it.
func IsDiskMount(m specs.Mount) bool {
	return !IsBind(m) && slices.Contains(diskFSTypes, m.Type) && strings.HasPrefix(path.Clean(m.Source), "/dev/") || isLoopImage(m)
}

// DirectVolume is the disk mount that replaces bind mount m of a direct-assigned volume
// (internal/directvolume): the volume's device with its file system type, the record's
// file system options, the bind's own options but bind and rbind, and "loop" when the
// device is an image file. A file system that does not live on a disk is refused.
func DirectVolume(m specs.Mount, device, fsType string, fsOptions []string, imageFile bool) (specs.Mount, error) {
	if !slices.Contains(diskFSTypes, fsType) {
		return specs.Mount{}, fmt.Errorf("mount %s: direct volume %s: fstype %q is not a disk file system (one of %s): %w",
			m.Destination, m.Source, fsType, strings.Join(diskFSTypes, ", "), errdefs.ErrInvalidArgument)
	}
	opts := slices.Clone(fsOptions)
	for _, o := range m.Options {
		if o != "bind" && o != "rbind" {
			opts = append(opts, o)
		}
	}
	if imageFile && !slices.Contains(opts, "loop") {
		opts = append(opts, "loop")
	}
	return specs.Mount{Destination: m.Destination, Type: fsType, Source: device, Options: opts}, nil
}

// mountFlagOptions are the options a bind mount takes: mount flags, propagation, recursive
// attributes and id mappings (runc's and the kernel's words). Any other option is data
// for a file system, which mount(2) ignores on a bind mount.
var mountFlagOptions = []string{
	"bind", "rbind", "ro", "rw", "suid", "nosuid", "dev", "nodev", "exec", "noexec",
	"sync", "async", "dirsync", "remount", "mand", "nomand", "atime", "noatime",
	"diratime", "nodiratime", "relatime", "norelatime", "strictatime", "nostrictatime",
	"lazytime", "nolazytime", "silent", "loud", "iversion", "noiversion", "symfollow", "nosymfollow",
	"private", "rprivate", "shared", "rshared", "slave", "rslave", "unbindable", "runbindable",
	"rro", "rrw", "rnosuid", "rsuid", "rnodev", "rdev", "rnoexec", "rexec", "rnoatime", "ratime",
	"rnodiratime", "rdiratime", "rrelatime", "rnorelatime", "rstrictatime", "rnostrictatime",
	"rnosymfollow", "rsymfollow", "idmap", "ridmap", "tmpcopyup",
}

// mountsOf validates the mounts and resolves relative bind sources against the bundle. A
// bind mount's file system data options (mode=, size=, ...) are dropped, as mount(2) drops
// them and runc 1.1 passes them to it; ignored lists each such mount with what it dropped.
func mountsOf(bundle string, in []specs.Mount) (_ []specs.Mount, ignored []string, _ error) {
	out := make([]specs.Mount, 0, len(in))
	for i, m := range in {
		if !path.IsAbs(m.Destination) {
			return nil, nil, fmt.Errorf("mounts[%d].destination = %q: not an absolute path", i, m.Destination)
		}
		m.Destination = path.Clean(m.Destination)
		if strings.ContainsRune(m.Source, 0) || strings.ContainsRune(m.Destination, 0) {
			return nil, nil, fmt.Errorf("mounts[%d] (%s): path contains a NUL byte", i, m.Destination)
		}
		if IsDiskMount(m) {
			if !path.IsAbs(m.Source) || path.Clean(m.Source) != m.Source {
				return nil, nil, fmt.Errorf("mounts[%d] (%s): %s device %q: not a clean absolute path", i, m.Destination, m.Type, m.Source)
			}
		}
		if IsBind(m) {
			if m.Source == "" {
				return nil, nil, fmt.Errorf("mounts[%d] (%s): bind mount without a source", i, m.Destination)
			}
			if !path.IsAbs(m.Source) {
				m.Source = path.Join(bundle, m.Source)
			}
		}
		m.Options = slices.Clone(m.Options)
		if IsBind(m) {
			var data []string
			m.Options = slices.DeleteFunc(m.Options, func(o string) bool {
				if slices.Contains(mountFlagOptions, o) {
					return false
				}
				data = append(data, o)
				return true
			})
			if len(data) > 0 {
				ignored = append(ignored, fmt.Sprintf("mounts[%d] (%s): %s", i, m.Destination, strings.Join(data, ",")))
			}
		}
		out = append(out, m)
	}
	return out, ignored, nil
}

// HostDeviceFunc reports whether the host has a device of a kind ('c' or 'b') with those
// numbers (a /sys/dev entry).
type HostDeviceFunc func(kind byte, major, minor int64) bool

// devicesOf validates the devices: an absolute path and a type of c, b, u (with
// non-negative major and minor numbers) or p, and sorts them by what the VM can do with
// them. A FIFO (p) is made in the guest. A character device (c, u) must be one every
// kernel provides with the same numbers (guestdev.Kernel), or one the host does not have:
// runc makes that node on the host as given, naming no device, and the guest makes it
// likewise (the agent refuses it if the guest has a device with those numbers). Any other
// character device is the host's, cannot be passed to the VM, and is refused, naming it.
// A block device (b) the host has is attached to the VM as a disk and the guest gives the
// container its own numbers for it; one the host does not have is a node only, as a
// character device the host does not have. absent lists the paths of the nodes only.
func devicesOf(spec *specs.Spec, hostHas HostDeviceFunc) (devices []specs.LinuxDevice, absent []string, _ error) {
	if spec.Linux == nil {
		return nil, nil, nil
	}
	out := make([]specs.LinuxDevice, 0, len(spec.Linux.Devices))
	for i, d := range spec.Linux.Devices {
		if !path.IsAbs(d.Path) || path.Clean(d.Path) != d.Path {
			return nil, nil, fmt.Errorf("linux.devices[%d].path = %q: not a clean absolute path", i, d.Path)
		}
		switch d.Type {
		case "c", "b", "u":
			if d.Major < 0 || d.Minor < 0 {
				return nil, nil, fmt.Errorf("linux.devices[%d] (%s): major %d / minor %d must not be negative", i, d.Path, d.Major, d.Minor)
			}
			kind := d.Type[0]
			if kind == 'u' {
				kind = 'c'
			}
			switch {
			case kind == 'c' && guestdev.IsKernel(d.Major, d.Minor):
			case !hostHas(kind, d.Major, d.Minor):
				absent = append(absent, d.Path)
			case kind == 'c':
				return nil, nil, fmt.Errorf("linux.devices[%d] (%s): character device %d:%d is a device of the host, which cannot be passed to the VM (the guest makes only %s, and nodes of devices the host does not have)", i, d.Path, d.Major, d.Minor, guestdev.Names())
			}
		case "p":
		default:
			return nil, nil, fmt.Errorf("linux.devices[%d] (%s): type %q (allowed: c, b, u, p)", i, d.Path, d.Type)
		}
		out = append(out, d)
	}
	return out, absent, nil
}

// parseTmpfsSize reads tmpfs's size= value (bytesize.Parse); zero is no size here, and
// percentages depend on the guest's RAM and are not sizes here either.
func parseTmpfsSize(v string) (uint64, bool) {
	n, err := bytesize.Parse(v)
	return n, err == nil && n > 0
}
