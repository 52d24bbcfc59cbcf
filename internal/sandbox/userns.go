package sandbox

import (
	"fmt"
	"os"

	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/idrange"
)

// leaseVMMIDs leases the VMM's host ids from s.cfg.VMMIDs and prepares what the VMM
// reaches by path for them: the sandbox directory becomes searchable (0711: its
// entries can be reached by name, not listed), the export's root becomes theirs, as
// the root of what the 9p server serves, and the shared tree's directories become
// readable (the 9p server opens each directory it walks through). The lease is s.vmmIDs; the caller releases it
// on failure.
func (s *Sandbox) leaseVMMIDs(vmcfg *hypervisor.Config) error {
	dir := s.cfg.VMMIDLeaseDir
	if dir == "" {
		dir = idrange.DefaultLeaseDir
	}
	lease, err := idrange.Allocate(dir, *s.cfg.VMMIDs, s.dir)
	if err != nil {
		return err
	}
	s.vmmIDs = &lease
	if err := os.Chmod(s.dir, 0o711); err != nil {
		return fmt.Errorf("open the sandbox dir to the vmm: %w", err)
	}
	uid := int(lease.Range.HostID(0))
	if err := os.Lchown(s.share.Dir(), uid, uid); err != nil {
		return fmt.Errorf("give the export to the vmm: %w", err)
	}
	if err := s.share.OpenToUnprivilegedServer(); err != nil {
		return err
	}
	vmcfg.UserNS = &lease.Range
	return nil
}

// VMMIDs is the host id range the VMM runs under, or nil when it runs as root. A
// container's root file system is presented to the VMM idmapped into it.
func (s *Sandbox) VMMIDs() *idrange.Range {
	if s.vmmIDs == nil {
		return nil
	}
	r := s.vmmIDs.Range
	return &r
}
