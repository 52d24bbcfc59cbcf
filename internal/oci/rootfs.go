package oci

import (
	"path"
	"slices"

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
