package oci

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/vessel-containers/vessel/internal/config"
	"github.com/vessel-containers/vessel/internal/hostcgroup"
	"github.com/vessel-containers/vessel/internal/hypervisor"
)

// rootlessPlan applies rootless mode (hypervisor.rootless, or Options.Rootless when the shim
// runs without real root) to a sandbox's configuration: it refuses, naming them, the pieces
// that need root on the host, and reports whether the VMM jail is to be left out (the
// VMM already runs as the calling user, and hypervisor.vmm_id_range needs root to map
// its ids). docs/rootless.md.
func rootlessPlan(ctx context.Context, c *config.Config, cg hostcgroup.Config) error {
	if !c.Hypervisor.Rootless {
		return nil
	}
	if c.Hypervisor.SharedFS == hypervisor.SharedFSVirtioFS {
		return fmt.Errorf("hypervisor.shared_fs = %q cannot be used rootless: virtiofsd (Debian 12's) needs root on the host; use \"virtio-9p\": %w",
			c.Hypervisor.SharedFS, errdefs.ErrNotImplemented)
	}
	if c.Factory.EnableTemplate {
		return fmt.Errorf("factory.enable_template = true cannot be used rootless: templates live in a shared host directory that needs root: %w", errdefs.ErrNotImplemented)
	}
	if c.Factory.VMCacheNumber > 0 {
		return fmt.Errorf("factory.vm_cache_number = %d cannot be used rootless: the VM cache daemon runs as root: %w", c.Factory.VMCacheNumber, errdefs.ErrNotImplemented)
	}
	if cg.Path != "" {
		t, err := hostcgroup.Parse(cg.Path, hostcgroup.SystemdRunning())
		if err != nil {
			return err //nolint:wrapcheck // hostcgroup names the path
		}
		if err := hostcgroup.CheckDelegated(t); err != nil {
			return fmt.Errorf("linux.cgroupsPath %q: %w", cg.Path, err)
		}
	}
	if c.Hypervisor.VMMIDRange != "" {
		log.G(ctx).WithField("vmm_id_range", c.Hypervisor.VMMIDRange).
			Debug("rootless: hypervisor.vmm_id_range is not applied: QEMU runs as the calling user, whose user namespace cannot map other host ids")
		c.Hypervisor.VMMIDRange = ""
	}
	return nil
}
