//go:build !linux

package jail

import (
	"fmt"
	"os"

	"github.com/containerd/errdefs"
)

func enter([]string) error {
	return fmt.Errorf("the jail entry needs Linux: %w", errdefs.ErrNotImplemented)
}

// CanConfine: the jail entry needs Linux.
func CanConfine() error {
	return fmt.Errorf("the jail entry needs Linux: %w", errdefs.ErrNotImplemented)
}

func cloneRoot(*Root) ([]*os.File, error) {
	return nil, fmt.Errorf("a jail root needs Linux: %w", errdefs.ErrNotImplemented)
}
