package hvtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/vishvananda/netlink"

	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/network/nettest"
	"github.com/vessel-containers/vessel/internal/testutil"
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

// testNICs boots a VM with one NIC and runs CheckNICs on it, on taps in a network
// namespace the test makes (vhost-net for the second NIC where the host has it): the
// guest must release each device.
func (s *suite) testNICs(t *testing.T) {
	caps, err := hypervisor.CapabilitiesOf(s.driver)
	if err != nil {
		t.Fatal(err)
	}
	if !caps.NICHotplug {
		t.Skipf("%s does not hot-plug NICs", s.driver)
	}
	cfg := s.config(t, "nics")
	testutil.RequiresRoot(t)
	ns := nettest.New(t)
	n := 0
	tap := func(t *testing.T) *os.File {
		t.Helper()
		var f *os.File
		err := ns.Do(func() error {
			tt := &netlink.Tuntap{
				LinkAttrs: netlink.LinkAttrs{Name: fmt.Sprintf("hvtap%d", n)},
				Mode:      netlink.TUNTAP_MODE_TAP,
				Flags:     netlink.TUNTAP_NO_PI | netlink.TUNTAP_VNET_HDR,
				Queues:    1,
			}
			n++
			if err := netlink.LinkAdd(tt); err != nil {
				return err
			}
			f = tt.Fds[0]
			return nil
		})
		if err != nil {
			t.Fatalf("make a tap: %v", err)
		}
		t.Cleanup(func() { _ = f.Close() })
		return f
	}
	var vhost func(t *testing.T) *os.File
	if _, err := os.Stat("/dev/vhost-net"); err == nil {
		vhost = func(t *testing.T) *os.File {
			t.Helper()
			f, err := os.OpenFile("/dev/vhost-net", os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = f.Close() })
			return f
		}
	}
	cfg.NICs = []hypervisor.NIC{{ID: "hvtest-boot", MAC: "02:00:00:00:01:00", Tap: tap(t)}}
	b := s.startConfig(t, cfg)
	s.waitBooted(t, b)
	CheckNICs(t, b.vm, []string{"hvtest-boot"}, tap, vhost)
}
