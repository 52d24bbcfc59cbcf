//go:build !linux

package jail

import (
	"fmt"

	"github.com/containerd/errdefs"
)

func enter([]string) error {
	return fmt.Errorf("the jail entry needs Linux: %w", errdefs.ErrNotImplemented)
}

// CanConfine: the jail entry needs Linux.
func CanConfine() error {
	return fmt.Errorf("the jail entry needs Linux: %w", errdefs.ErrNotImplemented)
}
