package sandbox

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
	"github.com/vessel-containers/vessel/internal/oci"
)

// TestOverlayStorage: the overlay over layer disks names each directory by the guest's
// mount point of its disk.
func TestOverlayStorage(t *testing.T) {
	o := &oci.DiskOverlay{
		Lower: []oci.DiskDir{{Disk: 2}, {Disk: 1}}, Upper: oci.DiskDir{Disk: 0, Path: "upper"}, Work: oci.DiskDir{Disk: 0, Path: "work"},
		Options: []string{"index=off"},
	}
	got := overlayStorage(o, []string{"/run/vessel/disks/disk0", "/run/vessel/disks/disk1", "/run/vessel/disks/disk2"}, "/run/vessel/rootfs/c1")
	want := &agentv1.Storage{Driver: "overlay", Source: "overlay", Fstype: "overlay", MountPoint: "/run/vessel/rootfs/c1", Options: []string{
		"lowerdir=/run/vessel/disks/disk2:/run/vessel/disks/disk1", "upperdir=/run/vessel/disks/disk0/upper",
		"workdir=/run/vessel/disks/disk0/work", "index=off",
	}}
	if got.GetDriver() != want.GetDriver() || got.GetFstype() != want.GetFstype() || got.GetMountPoint() != want.GetMountPoint() || !slices.Equal(got.GetOptions(), want.GetOptions()) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestSplitDiskOptions(t *testing.T) {
	fs, bind := splitDiskOptions([]string{"rbind", "ro", "nosuid", "errors=remount-ro", "rprivate", "defaults", "noload", "loop"})
	if want := []string{"errors=remount-ro", "noload"}; !slices.Equal(fs, want) {
		t.Errorf("fs options: got %q, want %q", fs, want)
	}
	if want := []string{"ro", "nosuid", "rprivate"}; !slices.Equal(bind, want) {
		t.Errorf("bind options: got %q, want %q", bind, want)
	}
}

// TestPlugDisksRefuses checks the errors before anything is attached: a disk mount whose
// source is not a block device, a device number the host does not have, and a VM that
// cannot attach disks.
func TestPlugDisksRefuses(t *testing.T) {
	vm := &recVM{}
	s, _ := newTestSandbox(t, vm)
	c := s.containers["created"]
	for _, tc := range []struct {
		name string
		spec specs.Spec
		want string
		is   func(error) bool
	}{
		{"not a block device", specs.Spec{Mounts: []specs.Mount{{Destination: "/data", Type: "ext4", Source: "/dev/null"}}},
			"not a block device", errdefs.IsInvalidArgument},
		{"missing device", specs.Spec{Linux: &specs.Linux{Devices: []specs.LinuxDevice{{Path: "/dev/xvda", Type: "b", Major: 4095, Minor: 1048575}}}},
			"no block device 4095:1048575 on the host", errdefs.IsNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rb undo
			_, _, err := s.plugDisks(context.Background(), c, &oci.Container{}, &tc.spec, &rb)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !tc.is(err) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
			if len(c.disks) != 0 || len(rb) != 0 {
				t.Errorf("a refused plug holds disks %v (%d undo steps)", c.disks, len(rb))
			}
		})
	}
	if _, err := s.acquireDisk(context.Background(), blockKey(1), "/dev/x", false); !errdefs.IsNotImplemented(err) {
		t.Errorf("attach on a vm without disk hotplug: got %v, want ErrNotImplemented", err)
	}
}
