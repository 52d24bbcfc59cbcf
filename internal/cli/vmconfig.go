package cli

import (
	"github.com/urfave/cli/v2"

	"github.com/vessel-containers/vessel/internal/hypervisor"
)

// vmConfig is the VM plan for a sandbox.
// TODO(issue 4): load configuration.toml and annotations through internal/config.
func vmConfig(_ *cli.Context) (hypervisor.Config, error) {
	return hypervisor.Config{
		Kernel:       "/var/lib/vessel/guest/vmlinux",
		Initrd:       "/var/lib/vessel/guest/initramfs.img",
		Accelerator:  hypervisor.AccelAuto,
		VCPUs:        1,
		MaxVCPUs:     2,
		MemoryMiB:    256,
		MaxMemoryMiB: 1024,
		MemorySlots:  4,
		SharedFS:     hypervisor.SharedFS9P,
	}, nil
}
