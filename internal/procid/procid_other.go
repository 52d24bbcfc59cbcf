//go:build !linux

package procid

import (
	"fmt"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
)

// ReadStat needs /proc: Linux only.
func ReadStat(pid int) (Stat, error) {
	return Stat{}, fmt.Errorf("process %d: /proc stat: %w", pid, errdefs.ErrNotImplemented)
}

// Of needs /proc: Linux only.
func Of(pid int) (ID, error) {
	return ID{}, fmt.Errorf("process %d: identity: %w", pid, errdefs.ErrNotImplemented)
}

// Self needs /proc: Linux only.
func Self() (ID, error) { return ID{}, fmt.Errorf("process identity: %w", errdefs.ErrNotImplemented) }

// Exists cannot tell without /proc: false.
func (id ID) Exists() bool { return false }

// Alive cannot tell without /proc: false.
func (id ID) Alive() bool { return false }

// Signal needs pidfds: Linux only.
func (id ID) Signal(sig syscall.Signal) error {
	return fmt.Errorf("signal %s: %w", id, errdefs.ErrNotImplemented)
}

// Wait cannot wait without pidfds: false.
func (id ID) Wait(timeout time.Duration) bool { return false }
