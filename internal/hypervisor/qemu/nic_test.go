package qemu

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/hypervisor/hvtest"
	"github.com/vessel-containers/vessel/internal/hypervisor/qemu/qemutest"
)

// TestCommandLineNICs checks the netdev and device of each NIC: tap by descriptor, vhost
// only when a vhost descriptor is passed, the pod interface's MAC; a multiqueue NIC with
// its descriptors as fds= and vhostfds= lists and mq=on with 2N+2 vectors.
func TestCommandLineNICs(t *testing.T) {
	f := pipeFile(t)
	cfg := baseConfig()
	cfg.NICs = []hypervisor.NIC{
		{ID: "vsl-net0", MAC: "02:42:0a:d5:00:02"},
		{ID: "vsl-net1", MAC: "02:42:0a:d5:00:03"},
		{ID: "vsl-net2", MAC: "02:42:0a:d5:00:04", MoreQueues: []hypervisor.NICQueue{{Tap: f, Vhost: f}, {Tap: f, Vhost: f}}},
		{ID: "vsl-net3", MAC: "02:42:0a:d5:00:05", MoreQueues: []hypervisor.NICQueue{{Tap: f}}},
	}
	l := tcgLaunch
	l.nics = []nicFDs{
		{taps: []int{6}, vhosts: []int{7}}, {taps: []int{8}},
		{taps: []int{9, 11, 13}, vhosts: []int{10, 12, 14}}, {taps: []int{15, 16}},
	}
	got := options(commandLine(&cfg, l))
	wantNetdev := []string{
		"tap,id=vsl-net0,fd=6,vhost=on,vhostfd=7", "tap,id=vsl-net1,fd=8",
		"tap,id=vsl-net2,fds=9:11:13,vhost=on,vhostfds=10:12:14", "tap,id=vsl-net3,fds=15:16",
	}
	if !slices.Equal(got["-netdev"], wantNetdev) {
		t.Errorf("-netdev: got %q, want %q", got["-netdev"], wantNetdev)
	}
	// Both in the bridge's first slots, with ids, so that they can be unplugged.
	for _, want := range []string{
		"virtio-net-pci,id=vnic-vsl-net0,netdev=vsl-net0,mac=02:42:0a:d5:00:02,bus=vessel-bridge0,addr=0x1",
		"virtio-net-pci,id=vnic-vsl-net1,netdev=vsl-net1,mac=02:42:0a:d5:00:03,bus=vessel-bridge0,addr=0x2",
		"virtio-net-pci,id=vnic-vsl-net2,netdev=vsl-net2,mac=02:42:0a:d5:00:04,bus=vessel-bridge0,addr=0x3,mq=on,vectors=8",
		"virtio-net-pci,id=vnic-vsl-net3,netdev=vsl-net3,mac=02:42:0a:d5:00:05,bus=vessel-bridge0,addr=0x4,mq=on,vectors=6",
	} {
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
		{"queue without tap", []hypervisor.NIC{{ID: "n0", MAC: "02:00:00:00:00:01", Tap: f, MoreQueues: []hypervisor.NICQueue{{}}}}, "queue 1 has no tap"},
		{"queue without vhost", []hypervisor.NIC{{ID: "n0", MAC: "02:00:00:00:00:01", Tap: f, Vhost: f, MoreQueues: []hypervisor.NICQueue{{Tap: f}}}}, "some queues but not all"},
		{"queue with vhost alone", []hypervisor.NIC{{ID: "n0", MAC: "02:00:00:00:00:01", Tap: f, MoreQueues: []hypervisor.NICQueue{{Tap: f, Vhost: f}}}}, "some queues but not all"},
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
	for range 7 {
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
			{ID: "vsl-net2", MAC: "02:42:0a:d5:00:04", Tap: files[3], Vhost: files[4], MoreQueues: []hypervisor.NICQueue{{Tap: files[5], Vhost: files[6]}}},
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

// pipeFile is the read end of a pipe, closed when the test ends: a descriptor the fake
// accepts where QEMU wants a tap or vhost-net device.
func pipeFile(t *testing.T) *os.File {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return r
}

// startFakeNICs starts a fake QEMU in normal mode with the given boot NICs and block
// driver.
func startFakeNICs(t *testing.T, cold []hypervisor.NIC, block hypervisor.BlockDriver) (*VM, hypervisor.Config) {
	t.Helper()
	return startNormalFake(t, "hotnics", func(c *hypervisor.Config) {
		c.NICs = cold
		c.Block.Driver = block
	})
}

// TestFakeNICsConformance runs the conformance suite's NIC checks on the fake, with a
// NIC from boot that detaches like the hot-plugged ones.
func TestFakeNICsConformance(t *testing.T) {
	vm, _ := startFakeNICs(t, []hypervisor.NIC{{ID: "vsl-net0", MAC: "02:42:0a:d5:00:02", Tap: pipeFile(t)}}, "")
	hvtest.CheckNICs(t, vm, []string{"vsl-net0"}, pipeFile, pipeFile)
}

// TestFakeNICSequence checks the QMP commands of a NIC's attach (descriptors by name,
// netdev, device in the first free bridge slot after the boot NIC) and detach, and that a
// disk then takes the next free slot of the shared bridge.
func TestFakeNICSequence(t *testing.T) {
	vm, cfg := startFakeNICs(t, []hypervisor.NIC{{ID: "vsl-net0", MAC: "02:42:0a:d5:00:02", Tap: pipeFile(t)}}, "")
	ctx := fakeCtx(t)
	path, err := vm.AttachNIC(ctx, hypervisor.NIC{ID: "vsl-net1", MAC: "02:42:0a:d5:00:03", Tap: pipeFile(t), Vhost: pipeFile(t)})
	if err != nil {
		t.Fatalf("attach: %v", err)
	}
	if path != "1e/02" {
		t.Errorf("pci path: got %q, want 1e/02 (the boot nic has slot 1)", path)
	}
	addr, err := vm.AttachDisk(ctx, hypervisor.Disk{ID: "d0", File: diskFile(t)})
	if err != nil {
		t.Fatalf("attach disk: %v", err)
	}
	if addr.PCIPath != "1e/03" {
		t.Errorf("disk pci path: got %q, want 1e/03 (after the nics)", addr.PCIPath)
	}
	if err := vm.DetachNIC(ctx, "vsl-net1"); err != nil {
		t.Fatalf("detach: %v", err)
	}
	if err := vm.DetachNIC(ctx, "vsl-net0"); err != nil {
		t.Fatalf("detach the boot nic: %v", err)
	}
	var got []string
	for _, l := range qmpLog(t, cfg) {
		if !strings.Contains(l, "d0") {
			got = append(got, l)
		}
	}
	want := []string{
		`getfd {"fdname":"vnic-tap-vsl-net1"}`,
		`getfd {"fdname":"vnic-vhost-vsl-net1"}`,
		`netdev_add {"fd":"vnic-tap-vsl-net1","id":"vsl-net1","type":"tap","vhost":true,"vhostfd":"vnic-vhost-vsl-net1"}`,
		`device_add {"addr":"0x2","bus":"vessel-bridge0","driver":"virtio-net-pci","id":"vnic-vsl-net1","mac":"02:42:0a:d5:00:03","netdev":"vsl-net1"}`,
		`device_del {"id":"vnic-vsl-net1"}`,
		`netdev_del {"id":"vsl-net1"}`,
		`device_del {"id":"vnic-vsl-net0"}`,
		`netdev_del {"id":"vsl-net0"}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("qmp commands:\n got %q\nwant %q", got, want)
	}
	// The freed slots go to the next NIC.
	if path, err := vm.AttachNIC(ctx, hypervisor.NIC{ID: "vsl-net2", MAC: "02:42:0a:d5:00:04", Tap: pipeFile(t)}); err != nil || path != "1e/01" {
		t.Errorf("attach after detaching all nics: got %q, %v; want 1e/01", path, err)
	}
}

// TestFakeNICRollback checks that a refused netdev_add leaves no descriptor with the
// monitor and a refused device_add no netdev, and that the id is free again afterwards.
func TestFakeNICRollback(t *testing.T) {
	vm, cfg := startFakeNICs(t, nil, hypervisor.BlockVirtioSCSI)
	ctx := fakeCtx(t)
	_, err := vm.AttachNIC(ctx, hypervisor.NIC{ID: qemutest.FailMarker + "-n", MAC: "02:00:00:00:00:01", Tap: pipeFile(t), Vhost: pipeFile(t)})
	if err == nil {
		t.Fatal("attach with a refused netdev_add: got nil error")
	}
	got := qmpLog(t, cfg)
	if n := len(got); n < 2 || !strings.HasPrefix(got[n-2], "closefd ") || !strings.HasPrefix(got[n-1], "closefd ") {
		t.Errorf("undo of a refused netdev_add: got %q, want two closefd last", got)
	}
	// An id ending in the marker: the fake refuses the device_add.
	vm.mu.Lock()
	vm.nic.nics["x"] = &nic{slot: 1, plugged: true} // slot 1 taken: the next NIC gets slot 2
	vm.mu.Unlock()
	_, err = vm.AttachNIC(ctx, hypervisor.NIC{ID: "n1-" + qemutest.FailMarker, MAC: "02:00:00:00:00:02", Tap: pipeFile(t)})
	if err == nil {
		t.Fatal("attach with a refused device_add: got nil error")
	}
	got = qmpLog(t, cfg)
	if n := len(got); n < 1 || got[n-1] != `netdev_del {"id":"n1-faildev"}` {
		t.Errorf("undo of a refused device_add: got %q, want netdev_del last", got)
	}
	if err := vm.DetachNIC(ctx, "n1-"+qemutest.FailMarker); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("detach of a nic whose attach failed: got %v, want ErrNotFound", err)
	}
	// With virtio-scsi the disks use SCSI ids, not bridge slots: a disk does not move the
	// NICs.
	if _, err := vm.AttachDisk(ctx, hypervisor.Disk{ID: "d0", File: diskFile(t)}); err != nil {
		t.Fatal(err)
	}
	if path, err := vm.AttachNIC(ctx, hypervisor.NIC{ID: "n2", MAC: "02:00:00:00:00:03", Tap: pipeFile(t)}); err != nil || path != "1e/02" {
		t.Errorf("attach: got %q, %v; want 1e/02", path, err)
	}
}

// TestFakeNICMultiqueue hot-plugs a NIC with two queue pairs and vhost-net: each queue's
// descriptors go to the monitor by name, netdev_add takes them as fds and vhostfds lists,
// and device_add asks for mq with 6 vectors (the fake refuses a multiqueue netdev without).
func TestFakeNICMultiqueue(t *testing.T) {
	vm, cfg := startFakeNICs(t, nil, "")
	ctx := fakeCtx(t)
	n := hypervisor.NIC{
		ID: "vsl-net0", MAC: "02:42:0a:d5:00:02", Tap: pipeFile(t), Vhost: pipeFile(t),
		MoreQueues: []hypervisor.NICQueue{{Tap: pipeFile(t), Vhost: pipeFile(t)}},
	}
	if _, err := vm.AttachNIC(ctx, n); err != nil {
		t.Fatalf("attach: %v", err)
	}
	if err := vm.DetachNIC(ctx, "vsl-net0"); err != nil {
		t.Fatalf("detach: %v", err)
	}
	want := []string{
		`getfd {"fdname":"vnic-tap-vsl-net0-0"}`,
		`getfd {"fdname":"vnic-vhost-vsl-net0-0"}`,
		`getfd {"fdname":"vnic-tap-vsl-net0-1"}`,
		`getfd {"fdname":"vnic-vhost-vsl-net0-1"}`,
		`netdev_add {"fds":"vnic-tap-vsl-net0-0:vnic-tap-vsl-net0-1","id":"vsl-net0","type":"tap","vhost":true,"vhostfds":"vnic-vhost-vsl-net0-0:vnic-vhost-vsl-net0-1"}`,
		`device_add {"addr":"0x1","bus":"vessel-bridge0","driver":"virtio-net-pci","id":"vnic-vsl-net0","mac":"02:42:0a:d5:00:02","mq":true,"netdev":"vsl-net0","vectors":6}`,
		`device_del {"id":"vnic-vsl-net0"}`,
		`netdev_del {"id":"vsl-net0"}`,
	}
	if got := qmpLog(t, cfg); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("qmp commands:\n got %q\nwant %q", got, want)
	}
}
