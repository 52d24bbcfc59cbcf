package hvtest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/vessel-containers/vessel/internal/hypervisor"
)

// rePCIPath is a DiskAddress.PCIPath: two-digit hexadecimal slots joined by '/'.
var rePCIPath = regexp.MustCompile(`^[0-9a-f]{2}(/[0-9a-f]{2})+$`)

// CheckDisks checks the hypervisor.DiskHotplugger contract on a running VM: a disk
// attaches at a PCI path and is listed, a second disk gets another path, an id attached
// twice is refused with ErrAlreadyExists and a bad id with ErrInvalidArgument, detaching
// removes it from the list, and detaching an unknown id is ErrNotFound. The disks are
// regular files in the test's temporary directory.
func CheckDisks(t *testing.T, vm hypervisor.VM) {
	t.Helper()
	h, ok := vm.(hypervisor.DiskHotplugger)
	if !ok {
		t.Fatalf("%T does not implement hypervisor.DiskHotplugger", vm)
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	open := func(name string, flag int) *os.File {
		t.Helper()
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, make([]byte, 1<<20), 0o600); err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(p, flag, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = f.Close() })
		return f
	}
	list := func() []string {
		t.Helper()
		ids, err := h.Disks(ctx)
		if err != nil {
			t.Fatalf("disks: %v", err)
		}
		return ids
	}
	if got := list(); len(got) != 0 {
		t.Fatalf("disks of a new vm: got %q, want none", got)
	}

	rw := open("rw.img", os.O_RDWR)
	ro := open("ro.img", os.O_RDONLY)
	a, err := h.AttachDisk(ctx, hypervisor.Disk{ID: "hvtest-rw", File: rw})
	if err != nil {
		t.Fatalf("attach: %v", err)
	}
	checkAddress(t, a)
	b, err := h.AttachDisk(ctx, hypervisor.Disk{ID: "hvtest-ro", File: ro, ReadOnly: true})
	if err != nil {
		t.Fatalf("attach read-only: %v", err)
	}
	checkAddress(t, b)
	if b == a {
		t.Errorf("two disks at one address %+v", a)
	}
	if got, want := list(), []string{"hvtest-ro", "hvtest-rw"}; !slices.Equal(got, want) {
		t.Errorf("disks: got %q, want %q", got, want)
	}
	if _, err := h.AttachDisk(ctx, hypervisor.Disk{ID: "hvtest-rw", File: rw}); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("attach of an attached id: got %v, want ErrAlreadyExists", err)
	}
	if _, err := h.AttachDisk(ctx, hypervisor.Disk{ID: "bad id", File: rw}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("attach with a bad id: got %v, want ErrInvalidArgument", err)
	}
	if err := h.DetachDisk(ctx, "hvtest-rw"); err != nil {
		t.Fatalf("detach: %v", err)
	}
	if got, want := list(), []string{"hvtest-ro"}; !slices.Equal(got, want) {
		t.Errorf("disks after a detach: got %q, want %q", got, want)
	}
	if err := h.DetachDisk(ctx, "hvtest-rw"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("second detach: got %v, want ErrNotFound", err)
	}
	// The freed id attaches again.
	if _, err := h.AttachDisk(ctx, hypervisor.Disk{ID: "hvtest-rw", File: rw}); err != nil {
		t.Fatalf("attach after detach: %v", err)
	}
	for _, id := range []string{"hvtest-rw", "hvtest-ro"} {
		if err := h.DetachDisk(ctx, id); err != nil {
			t.Fatalf("detach %s: %v", id, err)
		}
	}
	if got := list(); len(got) != 0 {
		t.Errorf("disks after detaching all: got %q, want none", got)
	}
}

// checkAddress checks that exactly one field of a is set, in its format.
func checkAddress(t *testing.T, a hypervisor.DiskAddress) {
	t.Helper()
	switch {
	case a.PCIPath != "" && a.SCSIAddress != "":
		t.Errorf("address %+v: both a pci path and a scsi address", a)
	case a.PCIPath != "" && !rePCIPath.MatchString(a.PCIPath):
		t.Errorf("pci path %q: want two-digit hex slots joined by '/'", a.PCIPath)
	case a.SCSIAddress != "" && !reSCSIAddress.MatchString(a.SCSIAddress):
		t.Errorf("scsi address %q: want <scsi-id>:<lun>", a.SCSIAddress)
	case a.PCIPath == "" && a.SCSIAddress == "":
		t.Errorf("empty address")
	}
}

// reSCSIAddress is a DiskAddress.SCSIAddress.
var reSCSIAddress = regexp.MustCompile(`^[0-9]+:[0-9]+$`)

// testDisks boots a VM and runs CheckDisks on it: the guest must release each device.
func (s *suite) testDisks(t *testing.T) {
	caps, err := hypervisor.CapabilitiesOf(s.driver)
	if err != nil {
		t.Fatal(err)
	}
	if !caps.BlockHotplug {
		t.Skipf("%s does not hot-plug disks", s.driver)
	}
	for _, tc := range []struct {
		name  string
		block hypervisor.BlockConfig
	}{
		{"virtio-blk", hypervisor.BlockConfig{Driver: hypervisor.BlockVirtioBlk}},
		{"virtio-scsi", hypervisor.BlockConfig{Driver: hypervisor.BlockVirtioSCSI}},
		{"native-direct", hypervisor.BlockConfig{AIO: hypervisor.AIONative, CacheDirect: true, CacheNoFlush: true}},
		{"io_uring", hypervisor.BlockConfig{AIO: hypervisor.AIOIOUring}},
		{"io-limits", hypervisor.BlockConfig{MaxBytesPerSec: 1 << 20, MaxIOPS: 100}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := s.config(t, "disks")
			cfg.Block = tc.block
			b := s.startConfig(t, cfg)
			s.waitBooted(t, b)
			if tc.block.AIO == hypervisor.AIOIOUring {
				// The host may lack io_uring: then attaching is refused, clearly.
				if err := probeAttach(b.vm); errors.Is(err, errdefs.ErrNotImplemented) {
					t.Skipf("io_uring refused on this host, as it must be: %v", err)
				} else if err != nil {
					t.Fatalf("attach with io_uring: %v (want success or ErrNotImplemented)", err)
				}
			}
			CheckDisks(t, b.vm)
		})
	}
}

// probeAttach attaches and detaches one disk on a file of its own.
func probeAttach(vm hypervisor.VM) error {
	h, ok := vm.(hypervisor.DiskHotplugger)
	if !ok {
		return errors.New("no disk hotplug")
	}
	f, err := os.CreateTemp("", "hvtest-probe")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if err := f.Truncate(1 << 20); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if _, err := h.AttachDisk(ctx, hypervisor.Disk{ID: "probe", File: f}); err != nil {
		return err
	}
	return h.DetachDisk(ctx, "probe")
}
