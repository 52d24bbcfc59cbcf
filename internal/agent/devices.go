//go:build linux

package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
	"github.com/vessel-containers/vessel/internal/agent/device"
	"github.com/vessel-containers/vessel/internal/guestdev"
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

// sysDev is the guest's directory of device numbers (char/M:m, block/M:m).
const sysDev = "/sys/dev"

// checkDeviceNodes refuses the spec's device nodes that would name a device of the guest
// the host did not give the container. The host passes a character device only when every
// kernel has it with those numbers (guestdev.Kernel) or the host has no such device, and
// a block device the host has not got as a node only; a node of a device the guest has
// (the agent's own virtio-serial port, another container's disk) is refused here. The
// disks in devs, given their guest numbers by applyDevices, are the container's.
func checkDeviceNodes(spec *specs.Spec, devs []*agentv1.Device, sysDevDir string) error {
	if spec.Linux == nil {
		return nil
	}
	for i, d := range spec.Linux.Devices {
		dir := "char"
		switch d.Type {
		case "c", "u":
			if guestdev.IsKernel(d.Major, d.Minor) {
				continue
			}
		case "b":
			if slices.ContainsFunc(devs, func(g *agentv1.Device) bool { return g.GetContainerPath() == d.Path }) {
				continue
			}
			dir = "block"
		default:
			continue
		}
		p := fmt.Sprintf("%s/%s/%d:%d", sysDevDir, dir, d.Major, d.Minor)
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w: oci_spec.linux.devices[%d] (%s): %s device %d:%d is a device of the guest (%s), which the host did not give the container", errdefs.ErrInvalidArgument, i, d.Path, dir, d.Major, d.Minor, p)
		}
	}
	return nil
}
