package qemu

import (
	"fmt"

	"github.com/containerd/errdefs"

	"github.com/vessel-containers/vessel/internal/hypervisor"
)

// resolveAccel turns the configured accelerator into the one QEMU gets: AccelKVM or
// AccelTCG. probeKVM reports why KVM cannot run guests here (nil when it can).
func resolveAccel(want hypervisor.Accelerator, probeKVM func() error) (hypervisor.Accelerator, error) {
	switch want {
	case "", hypervisor.AccelAuto:
		if probeKVM() == nil {
			return hypervisor.AccelKVM, nil
		}
		return hypervisor.AccelTCG, nil
	case hypervisor.AccelKVM:
		if err := probeKVM(); err != nil {
			return "", fmt.Errorf("accelerator kvm requested but KVM is not usable on this host (use %q or %q): %w",
				hypervisor.AccelTCG, hypervisor.AccelAuto, err)
		}
		return hypervisor.AccelKVM, nil
	case hypervisor.AccelTCG:
		return hypervisor.AccelTCG, nil
	}
	return "", fmt.Errorf("accelerator %q: want %q, %q or %q: %w", want,
		hypervisor.AccelAuto, hypervisor.AccelKVM, hypervisor.AccelTCG, errdefs.ErrInvalidArgument)
}
