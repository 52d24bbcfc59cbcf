package hypervisor

import (
	"context"
)

// NICHotplugger is a VM that attaches and detaches network devices while it runs
// (reported as Capabilities.NICHotplug). The NICs of Config.NICs are attached at boot and
// can be detached the same way.
type NICHotplugger interface {
	// AttachNIC plugs a virtio-net device backed by n's tap (and vhost) descriptors and
	// returns its PCI path in the guest (as DiskAddress.PCIPath). The driver passes copies of
	// the descriptors to the VMM; the caller keeps ownership and may close them once
	// AttachNIC returned. An id already attached is an error wrapping
	// errdefs.ErrAlreadyExists; on error nothing of n is left in the VM.
	AttachNIC(ctx context.Context, n NIC) (pciPath string, err error)
	// DetachNIC removes the NIC: it asks the guest to release the device, waits until it
	// did (until ctx ends), then drops the VMM's backend and with it the VMM's copies of the
	// descriptors. An unknown id is an error wrapping errdefs.ErrNotFound.
	DetachNIC(ctx context.Context, id string) error
}
