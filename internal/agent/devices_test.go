//go:build linux

package agent

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
	"github.com/vessel-containers/vessel/internal/agent/device"
)

func i64(n int64) *int64 { return &n }

// TestApplyDevices checks that a disk's spec entry and device cgroup rule get the guest's
// numbers and keep their type, mode and owner.
func TestApplyDevices(t *testing.T) {
	find := func(_ context.Context, devType, pciPath string) (device.Block, error) {
		if devType == "scsi" && pciPath == "1:0" {
			return device.Block{Name: "sda", Major: 8, Minor: 0}, nil
		}
		if devType != "blk" || pciPath != "1e/01" {
			return device.Block{}, context.DeadlineExceeded
		}
		return device.Block{Name: "vda", Major: 254, Minor: 0}, nil
	}
	mode := os.FileMode(0o640)
	uid, gid := uint32(1000), uint32(1001)
	newSpec := func() *specs.Spec {
		return &specs.Spec{Linux: &specs.Linux{
			Devices: []specs.LinuxDevice{
				{Path: "/dev/null", Type: "c", Major: 1, Minor: 3},
				{Path: "/dev/xvda", Type: "b", Major: 7, Minor: 3, FileMode: &mode, UID: &uid, GID: &gid},
			},
			Resources: &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{
				{Allow: false, Access: "rwm"},
				{Allow: true, Type: "b", Major: i64(7), Minor: i64(3), Access: "rw"},
				{Allow: true, Type: "c", Major: i64(7), Minor: i64(3), Access: "rw"},
			}},
		}}
	}
	ctx := context.Background()
	spec := newSpec()
	if err := applyDevices(ctx, spec, []*agentv1.Device{{Type: "blk", VmPath: "1e/01", ContainerPath: "/dev/xvda"}}, find); err != nil {
		t.Fatal(err)
	}
	d := spec.Linux.Devices[1]
	if d.Major != 254 || d.Minor != 0 || d.Type != "b" || *d.FileMode != 0o640 || *d.UID != 1000 || *d.GID != 1001 {
		t.Errorf("device entry: got %+v", d)
	}
	if r := spec.Linux.Resources.Devices[1]; *r.Major != 254 || *r.Minor != 0 {
		t.Errorf("block rule: got %d:%d, want 254:0", *r.Major, *r.Minor)
	}
	if r := spec.Linux.Resources.Devices[2]; *r.Major != 7 || *r.Minor != 3 {
		t.Errorf("character rule changed: got %d:%d", *r.Major, *r.Minor)
	}
	spec = newSpec()
	if err := applyDevices(ctx, spec, []*agentv1.Device{{Type: "scsi", VmPath: "1:0", ContainerPath: "/dev/xvda"}}, find); err != nil {
		t.Fatal(err)
	}
	if d := spec.Linux.Devices[1]; d.Major != 8 || d.Minor != 0 {
		t.Errorf("scsi device entry: got %+v", d)
	}

	for _, tc := range []struct {
		name string
		dev  *agentv1.Device
		want error
	}{
		{"vfio", &agentv1.Device{Type: "vfio", VmPath: "0:0", ContainerPath: "/dev/xvda"}, errdefs.ErrNotImplemented},
		{"not in spec", &agentv1.Device{Type: "blk", VmPath: "1e/01", ContainerPath: "/dev/xvdz"}, errdefs.ErrInvalidArgument},
		{"not a block entry", &agentv1.Device{Type: "blk", VmPath: "1e/01", ContainerPath: "/dev/null"}, errdefs.ErrInvalidArgument},
		{"disk never comes", &agentv1.Device{Type: "blk", VmPath: "1e/02", ContainerPath: "/dev/xvda"}, context.DeadlineExceeded},
	} {
		if err := applyDevices(ctx, newSpec(), []*agentv1.Device{tc.dev}, find); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
}

// TestCheckDeviceNodes checks that nodes of devices the guest has are refused, except the
// kernel's own character devices and the container's disks, and that nodes of devices the
// guest has not got pass.
func TestCheckDeviceNodes(t *testing.T) {
	sys := t.TempDir()
	for _, p := range []string{"char/1:3", "char/245:1", "block/254:0", "block/254:16"} {
		if err := os.MkdirAll(sys+"/"+p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	disks := []*agentv1.Device{{Type: "blk", VmPath: "1e/01", ContainerPath: "/dev/xvda"}}
	for _, tc := range []struct {
		name    string
		dev     specs.LinuxDevice
		wantErr string
	}{
		{"kernel device", specs.LinuxDevice{Path: "/dev/null", Type: "c", Major: 1, Minor: 3}, ""},
		{"absent char", specs.LinuxDevice{Path: "/dev/test1", Type: "c", Major: 10, Minor: 666}, ""},
		{"absent block", specs.LinuxDevice{Path: "/dev/test2", Type: "b", Major: 8, Minor: 666}, ""},
		{"fifo", specs.LinuxDevice{Path: "/dev/fifo", Type: "p"}, ""},
		{"the container's disk", specs.LinuxDevice{Path: "/dev/xvda", Type: "b", Major: 254, Minor: 0}, ""},
		{"agent port", specs.LinuxDevice{Path: "/dev/p", Type: "c", Major: 245, Minor: 1}, "char device 245:1 is a device of the guest"},
		{"unbuffered agent port", specs.LinuxDevice{Path: "/dev/p", Type: "u", Major: 245, Minor: 1}, "char device 245:1"},
		{"another disk", specs.LinuxDevice{Path: "/dev/vdb", Type: "b", Major: 254, Minor: 16}, "block device 254:16 is a device of the guest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := &specs.Spec{Linux: &specs.Linux{Devices: []specs.LinuxDevice{tc.dev}}}
			err := checkDeviceNodes(spec, disks, sys)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("got %v, want an invalid-argument error containing %q", err, tc.wantErr)
			}
		})
	}
}
