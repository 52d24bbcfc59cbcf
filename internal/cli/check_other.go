//go:build !linux

package cli

import (
	"fmt"

	"github.com/containerd/errdefs"
)

func cgroupMode() (string, error) {
	return "", fmt.Errorf("cgroups: %w", errdefs.ErrNotImplemented)
}
