//go:build linux

package agent

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
	"github.com/vessel-containers/vessel/internal/agent/device"
)

// findBlockFunc finds the disk of a device type ("blk": at a PCI path, device.WaitBlock;
// "scsi": at a SCSI address, device.WaitSCSI) on the guest's sysfs.
type findBlockFunc func(ctx context.Context, devType, addr string) (device.Block, error)

// applyDevices gives the container the disks the host hot-plugged for it. Each request
// device ("blk": vm_path is the disk's PCI path; "scsi": its SCSI address) names by
// container_path an entry of the spec's linux.devices, which carries the host's device
// numbers: the entry gets the
// guest's numbers of the disk, once the kernel made it, and every block-device rule of
// linux.resources.devices with the host's numbers is rewritten to the guest's, so the
// container's device cgroup allows the disk it sees. Type, mode, uid and gid stay as the
// spec gives them.
func applyDevices(ctx context.Context, spec *specs.Spec, devs []*agentv1.Device, find findBlockFunc) error {
	if len(devs) == 0 {
		return nil
	}
	if spec.Linux == nil {
		return fmt.Errorf("%w: devices given but oci_spec.linux is missing", errdefs.ErrInvalidArgument)
	}
	type num struct{ major, minor int64 }
	remap := map[num]num{}
	for i, d := range devs {
		if d.GetType() != "blk" && d.GetType() != "scsi" {
			return fmt.Errorf("%w: devices[%d] (%s): type %q is not supported (blk and scsi are)", errdefs.ErrNotImplemented, i, d.GetContainerPath(), d.GetType())
		}
		j := -1
		for k := range spec.Linux.Devices {
			if spec.Linux.Devices[k].Path == d.GetContainerPath() {
				j = k
				break
			}
		}
		if j < 0 {
			return fmt.Errorf("%w: devices[%d]: container_path %q is not in oci_spec.linux.devices", errdefs.ErrInvalidArgument, i, d.GetContainerPath())
		}
		sd := &spec.Linux.Devices[j]
		if sd.Type != "b" {
			return fmt.Errorf("%w: devices[%d]: oci_spec.linux.devices entry %s has type %q, want b", errdefs.ErrInvalidArgument, i, sd.Path, sd.Type)
		}
		b, err := find(ctx, d.GetType(), d.GetVmPath())
		if err != nil {
			return fmt.Errorf("device %s (%s %s): %w", sd.Path, d.GetType(), d.GetVmPath(), err)
		}
		remap[num{sd.Major, sd.Minor}] = num{int64(b.Major), int64(b.Minor)}
		sd.Major, sd.Minor = int64(b.Major), int64(b.Minor)
	}
	if spec.Linux.Resources == nil {
		return nil
	}
	for k := range spec.Linux.Resources.Devices {
		r := &spec.Linux.Resources.Devices[k]
		if r.Type != "b" || r.Major == nil || r.Minor == nil {
			continue
		}
		if g, ok := remap[num{*r.Major, *r.Minor}]; ok {
			maj, minor := g.major, g.minor
			r.Major, r.Minor = &maj, &minor
		}
	}
	return nil
}
