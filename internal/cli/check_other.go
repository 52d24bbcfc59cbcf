//go:build !linux

package cli

import (
	"fmt"

	"github.com/containerd/errdefs"
)

func cgroupMode() (string, error) {
	return "", fmt.Errorf("cgroups: %w", errdefs.ErrNotImplemented)
}

func userNamespaces() error {
	return fmt.Errorf("user namespaces: %w", errdefs.ErrNotImplemented)
}

func idmappedMounts(string) error {
	return fmt.Errorf("idmapped mounts: %w", errdefs.ErrNotImplemented)
}
