package sandbox

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

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
			_, _, err := s.plugDisks(context.Background(), c, nil, nil, &tc.spec, &rb)
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
