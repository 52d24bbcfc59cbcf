//go:build !linux

package qemu

import (
	"context"
	"fmt"
	"syscall"

	"github.com/containerd/errdefs"

	"github.com/vessel-containers/vessel/internal/hypervisor"
)

// Detach needs pidfds on the adopting side: Linux only.
func (v *VM) Detach(ctx context.Context) (hypervisor.Adoption, error) {
	return hypervisor.Adoption{}, fmt.Errorf("qemu detach: %w", errdefs.ErrNotImplemented)
}

func (v *VM) adopt(ctx context.Context) error {
	return v.failBeforeExec(fmt.Errorf("qemu adopt: %w", errdefs.ErrNotImplemented))
}

// handoverAttr: without Pdeathsig nothing ties QEMU to its starter anyway.
func handoverAttr(cfg *hypervisor.Config, attr *syscall.SysProcAttr) {}
