//go:build !linux

package hypervisor

import (
	"fmt"

	"github.com/containerd/errdefs"
)

// KVMUsable: KVM exists only on Linux.
func KVMUsable() error { return fmt.Errorf("kvm: %w", errdefs.ErrNotImplemented) }
