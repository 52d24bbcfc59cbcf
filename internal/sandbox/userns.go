package sandbox

import (
	"errors"
	"fmt"
	"os"

	"github.com/vessel-containers/vessel/internal/config"
	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/idrange"
)

// leaseVMMIDs leases the VMM's host ids from s.cfg.VMMIDs and prepares what the VMM
// reaches for them: the export's root becomes theirs, as the root of what the file
// server serves, and the shared tree's directories become readable (the 9p server opens
// each directory it walks through, and host root's directories are open to it only by
// their modes). QEMU and virtiofsd reach the export (and QEMU its kernel and initrd)
// through clones their drivers pass them (jail.PassRoot), so the directories above them
// stay as they are. The lease is s.vmmIDs; the caller releases it on failure.
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

// FileIDsMapped tells whether the VMM runs on host ids of its own and reaches the
// container's files with their host owners (hypervisor.vmm_file_ids = "container"):
// the root file system and volumes are shown to it through writable mounts idmapped into
// its ids, so what guest root creates is owned by host root, as under runc. Otherwise
// (vmm_file_ids = "sandbox", or a VMM as root) volumes are shared as they are.
func (s *Sandbox) FileIDsMapped() bool {
	return s.vmmIDs != nil && s.cfg.Effective.Hypervisor.VMMFileIDs == config.VMMFileIDsContainer
}

// idmapUserNS opens the user namespace that the shares of a container are idmapped into
// (FileIDsMapped), or returns nil when they are not. The caller closes it.
func (s *Sandbox) idmapUserNS() (*os.File, error) {
	if !s.FileIDsMapped() {
		return nil, nil
	}
	return s.vmmIDs.Range.UserNS()
}

// noteFactoryVMMIDs records the slot that a VM from the factory's cache runs on (the
// kernel's uid map of its VMM): the factory transferred its lease to the sandbox
// directory, so until adoptVMMIDs or dropFactoryVMMIDs the sandbox holds two leases.
func (s *Sandbox) noteFactoryVMMIDs(pid int) error {
	if s.vmmIDs == nil {
		return nil
	}
	r, ok, err := idrange.OfProcess(pid)
	if err != nil {
		return fmt.Errorf("ids of the factory's vm: %w", err)
	}
	if !ok {
		return fmt.Errorf("the factory's vm runs in the host's user namespace; hypervisor.vmm_id_range needs an unprivileged one")
	}
	s.factoryIDs = &r
	return nil
}

// factoryLease is the lease of the factory VM's slot, transferred to the sandbox.
// Preconditions: s.factoryIDs and s.vmmIDs are set.
func (s *Sandbox) factoryLease() idrange.Lease {
	return idrange.Lease{Dir: s.vmmIDs.Dir, Pool: s.vmmIDs.Pool, Range: *s.factoryIDs, Owner: s.vmmIDs.Owner}
}

// adoptVMMIDs makes the factory VM's slot the sandbox's and gives back the one leased
// for a cold boot.
func (s *Sandbox) adoptVMMIDs() error {
	if s.factoryIDs == nil || *s.factoryIDs == s.vmmIDs.Range {
		s.factoryIDs = nil
		return nil
	}
	cold := *s.vmmIDs
	l := s.factoryLease()
	s.vmmIDs, s.factoryIDs = &l, nil
	return cold.Release()
}

// dropFactoryVMMIDs gives back the slot of a factory VM that was stopped, and gives the
// export it brought to the sandbox's own ids for the cold boot.
func (s *Sandbox) dropFactoryVMMIDs() error {
	if s.factoryIDs == nil {
		return nil
	}
	if *s.factoryIDs == s.vmmIDs.Range {
		s.factoryIDs = nil
		return nil
	}
	err := s.factoryLease().Release()
	s.factoryIDs = nil
	uid := int(s.vmmIDs.Range.HostID(0))
	if cerr := os.Lchown(s.share.Dir(), uid, uid); cerr != nil {
		err = errors.Join(err, fmt.Errorf("give the export to the vmm: %w", cerr))
	}
	return err
}

// vmmIDLeaseDir is the directory of the lease on the VMM's ids, empty when the VMM runs
// on the host's.
func (s *Sandbox) vmmIDLeaseDir() string {
	if s.vmmIDs == nil {
		return ""
	}
	return s.vmmIDs.Dir
}
