package qemu

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/hypervisor/qemu/qemutest"
)

// TestCommandLineNICs checks the netdev and device of each NIC: tap by descriptor, vhost
// only when a vhost descriptor is passed, the pod interface's MAC.
func TestCommandLineNICs(t *testing.T) {
	cfg := baseConfig()
	cfg.NICs = []hypervisor.NIC{
		{ID: "vsl-net0", MAC: "02:42:0a:d5:00:02"},
		{ID: "vsl-net1", MAC: "02:42:0a:d5:00:03"},
	}
	l := tcgLaunch
	l.nics = []nicFDs{{tap: 6, vhost: 7}, {tap: 8, vhost: -1}}
	got := options(commandLine(&cfg, l))
	wantNetdev := []string{"tap,id=vsl-net0,fd=6,vhost=on,vhostfd=7", "tap,id=vsl-net1,fd=8"}
	if !slices.Equal(got["-netdev"], wantNetdev) {
		t.Errorf("-netdev: got %q, want %q", got["-netdev"], wantNetdev)
	}
	for _, want := range []string{"virtio-net-pci,netdev=vsl-net0,mac=02:42:0a:d5:00:02", "virtio-net-pci,netdev=vsl-net1,mac=02:42:0a:d5:00:03"} {
		if !slices.Contains(got["-device"], want) {
			t.Errorf("-device %q missing from %q", want, got["-device"])
		}
	}
	base := baseConfig()
	if args := commandLine(&base, tcgLaunch); slices.Contains(args, "-netdev") {
		t.Errorf("no NICs, yet -netdev: %q", args)
	}
}

// TestNICValidate refuses NICs the driver could not pass on.
func TestNICValidate(t *testing.T) {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, tc := range []struct {
		name string
		nics []hypervisor.NIC
		want string
	}{
		{"no tap", []hypervisor.NIC{{ID: "n0", MAC: "02:00:00:00:00:01"}}, "no tap descriptor"},
		{"bad mac", []hypervisor.NIC{{ID: "n0", MAC: "02:00", Tap: f}}, "not an Ethernet address"},
		{"bad id", []hypervisor.NIC{{ID: "n,0", MAC: "02:00:00:00:00:01", Tap: f}}, "want letters"},
		{"dup id", []hypervisor.NIC{{ID: "n0", MAC: "02:00:00:00:00:01", Tap: f}, {ID: "n0", MAC: "02:00:00:00:00:02", Tap: f}}, "used twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig()
			cfg.NICs = tc.nics
			if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

// TestFakeNICDescriptors starts the fake QEMU through the jail entry with two NICs and
// checks that every descriptor the command line names is open in it (the fake exits like
// QEMU when one is not).
func TestFakeNICDescriptors(t *testing.T) {
	var files []*os.File
	for range 3 {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close(); w.Close() })
		files = append(files, r)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	vm, _ := newTestVM(t, func(c *hypervisor.Config) {
		c.ID = qemutest.ID(qemutest.Normal, "nics")
		c.Path = exe
		c.Accelerator = hypervisor.AccelTCG
		c.NICs = []hypervisor.NIC{
			{ID: "vsl-net0", MAC: "02:42:0a:d5:00:02", Tap: files[0], Vhost: files[1]},
			{ID: "vsl-net1", MAC: "02:42:0a:d5:00:03", Tap: files[2]},
		}
	})
	ctx := fakeCtx(t)
	if err := vm.Start(ctx); err != nil {
		t.Fatalf("start with NICs: %v", err)
	}
	if err := vm.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}
