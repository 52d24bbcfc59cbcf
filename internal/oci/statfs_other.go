//go:build !linux

package oci

import (
	"fmt"

	"github.com/containerd/errdefs"
)

func statfsSize(path string) (uint64, error) {
	return 0, fmt.Errorf("statfs %s: %w", path, errdefs.ErrNotImplemented)
}
