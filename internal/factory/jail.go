package factory

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/idrange"
	"github.com/vessel-containers/vessel/internal/sharefs"
)

// jailCacheVM prepares dir for a cached VM whose VMM runs unprivileged, as a sandbox
// prepares its own (sandbox.leaseVMMIDs): it leases a slot of the pool for dir, makes
// the export and the host-only tree (sharefs), gives the export to the slot's root, opens
// the tree to the file server and publishes the read-only view, which must be in the
// export before the VMM takes its copy of it. The directories above the export stay
// 0700: the driver passes the VMM its export as a clone (jail.PassRoot). The sandbox that takes the VM takes the
// lease, the export and the tree with it (fromCache). On error the caller removes dir
// with releaseVMDir.
func (f *Factory) jailCacheVM(ctx context.Context, dir string, want *hypervisor.Config) error {
	lease, err := idrange.Allocate(f.leaseDir(), *f.cfg.VMMIDs, dir)
	if err != nil {
		return fmt.Errorf("vm cache: %w", err)
	}
	share, err := sharefs.New(dir)
	if err != nil {
		return fmt.Errorf("vm cache: %w", err)
	}
	uid := int(lease.Range.HostID(0))
	if err := os.Lchown(share.Dir(), uid, uid); err != nil {
		return fmt.Errorf("vm cache: give the export to the vmm: %w", err)
	}
	if err := share.OpenToUnprivilegedServer(); err != nil {
		return fmt.Errorf("vm cache: %w", err)
	}
	if err := share.Publish(ctx); err != nil {
		return fmt.Errorf("vm cache: %w", err)
	}
	want.UserNS = &lease.Range
	return nil
}

// releaseVMDir removes the directory of a cached VM that is not handed out (its VM is
// stopped): the shared view jailCacheVM published, the id lease it took, then the rest.
func (f *Factory) releaseVMDir(ctx context.Context, dir string) error {
	if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	var errs []error
	if err := sharefs.Open(dir).Close(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := idrange.ReleaseOwner(f.leaseDir(), dir); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 { // a mount may be left: the walk must not go through it
		return errors.Join(errs...)
	}
	return os.RemoveAll(dir)
}
