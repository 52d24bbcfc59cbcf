package hvtest

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/vessel-containers/vessel/internal/hypervisor"
)

// CheckNICs checks the hypervisor.NICHotplugger contract on a running VM: a NIC attaches
// at a PCI path, a second one at another, an id attached twice is refused with
// ErrAlreadyExists and a bad id with ErrInvalidArgument, a detached id is ErrNotFound the
// second time and attaches again, and the NICs the VM booted with (cold, their ids) detach
// too. tap opens a descriptor the VMM accepts as a tap queue; vhost, when not nil, a
// vhost-net descriptor for the second NIC.
func CheckNICs(t *testing.T, vm hypervisor.VM, cold []string, tap, vhost func(t *testing.T) *os.File) {
	t.Helper()
	h, ok := vm.(hypervisor.NICHotplugger)
	if !ok {
		t.Fatalf("%T does not implement hypervisor.NICHotplugger", vm)
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	a, err := h.AttachNIC(ctx, hypervisor.NIC{ID: "hvtest-n0", MAC: "02:00:00:00:01:01", Tap: tap(t)})
	if err != nil {
		t.Fatalf("attach: %v", err)
	}
	if !rePCIPath.MatchString(a) {
		t.Errorf("pci path %q: want two-digit hex slots joined by '/'", a)
	}
	n1 := hypervisor.NIC{ID: "hvtest-n1", MAC: "02:00:00:00:01:02", Tap: tap(t)}
	if vhost != nil {
		n1.Vhost = vhost(t)
	}
	b, err := h.AttachNIC(ctx, n1)
	if err != nil {
		t.Fatalf("attach a second nic: %v", err)
	}
	if b == a || !rePCIPath.MatchString(b) {
		t.Errorf("second nic at %q, first at %q: want another pci path", b, a)
	}
	if _, err := h.AttachNIC(ctx, hypervisor.NIC{ID: "hvtest-n0", MAC: "02:00:00:00:01:03", Tap: tap(t)}); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("attach of an attached id: got %v, want ErrAlreadyExists", err)
	}
	if _, err := h.AttachNIC(ctx, hypervisor.NIC{ID: "bad id", MAC: "02:00:00:00:01:04", Tap: tap(t)}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("attach with a bad id: got %v, want ErrInvalidArgument", err)
	}
	if err := h.DetachNIC(ctx, "hvtest-n0"); err != nil {
		t.Fatalf("detach: %v", err)
	}
	if err := h.DetachNIC(ctx, "hvtest-n0"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("second detach: got %v, want ErrNotFound", err)
	}
	if _, err := h.AttachNIC(ctx, hypervisor.NIC{ID: "hvtest-n0", MAC: "02:00:00:00:01:01", Tap: tap(t)}); err != nil {
		t.Fatalf("attach after detach: %v", err)
	}
	for _, id := range append([]string{"hvtest-n0", "hvtest-n1"}, cold...) {
		if err := h.DetachNIC(ctx, id); err != nil {
			t.Fatalf("detach %s: %v", id, err)
		}
	}
}
