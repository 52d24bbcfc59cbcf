package shim

import (
	"strings"
	"testing"

	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
)

// TestCheckIDMappable: only one overlay mount can be presented idmapped to an
// unprivileged VMM; a bundle directory, a bind snapshot or several mounts are refused
// naming the key.
func TestCheckIDMappable(t *testing.T) {
	overlay := &types.Mount{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=/a:/b", "upperdir=/u", "workdir=/w"}}
	if err := checkIDMappable([]*types.Mount{overlay}); err != nil {
		t.Errorf("overlay refused: %v", err)
	}
	readOnly := &types.Mount{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=/a:/b"}}
	if err := checkIDMappable([]*types.Mount{readOnly}); err != nil {
		t.Errorf("read-only overlay refused: %v", err)
	}
	for name, rootfs := range map[string][]*types.Mount{
		"bundle directory": nil,
		"bind snapshot":    {{Type: "bind", Source: "/snap", Options: []string{"rbind", "rw"}}},
		"two mounts":       {overlay, overlay},
	} {
		err := checkIDMappable(rootfs)
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "hypervisor.vmm_id_range") {
			t.Errorf("%s: %v, want an invalid-argument error naming hypervisor.vmm_id_range", name, err)
		}
	}
}
