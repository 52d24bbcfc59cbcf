//go:build !linux

package hypervisor

import (
	"fmt"

	"github.com/containerd/errdefs"
)

// ProcessStartTime needs /proc: Linux only.
func ProcessStartTime(pid int) (uint64, error) {
	return 0, fmt.Errorf("process start time: %w", errdefs.ErrNotImplemented)
}
