package qemu

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/hypervisor/hvtest"
	"github.com/vessel-containers/vessel/internal/hypervisor/qemu/qemutest"
)

// startFakeBlock starts a fake QEMU in normal mode with the given block config.
func startFakeBlock(t *testing.T, block hypervisor.BlockConfig) (*VM, hypervisor.Config) {
	t.Helper()
	return startNormalFake(t, "disks", func(c *hypervisor.Config) { c.Block = block })
}

// startNormalFake starts a fake QEMU in normal mode named name, with edit applied to its
// configuration.
func startNormalFake(t *testing.T, name string, edit func(*hypervisor.Config)) (*VM, hypervisor.Config) {
	t.Helper()
	vm, cfg, err := startFakeWith(t, qemutest.Normal, name, fakeCtx(t), edit)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	return vm, cfg
}

// diskFile is a 1 MiB regular file opened read-write.
func diskFile(t *testing.T) *os.File {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(p, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return f
}

// qmpLog is the disk commands the fake received, one "qmp: <command> <json>" per line.
func qmpLog(t *testing.T, cfg hypervisor.Config) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(cfg.StateDir, qemuLogName))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if c, ok := strings.CutPrefix(l, "qmp: "); ok {
			out = append(out, c)
		}
	}
	return out
}

// TestFakeDisksConformance runs the conformance suite's disk checks on the fake.
func TestFakeDisksConformance(t *testing.T) {
	vm, _ := startFakeBlock(t, hypervisor.BlockConfig{})
	hvtest.CheckDisks(t, vm)
}

// TestFakeDiskSequence checks the QMP commands of an attach and a detach, and that the
// block settings reach blockdev-add.
func TestFakeDiskSequence(t *testing.T) {
	vm, cfg := startFakeBlock(t, hypervisor.BlockConfig{AIO: hypervisor.AIONative, CacheDirect: true, CacheNoFlush: true})
	ctx := fakeCtx(t)
	addr, err := vm.AttachDisk(ctx, hypervisor.Disk{ID: "d0", File: diskFile(t), ReadOnly: true})
	if err != nil {
		t.Fatalf("attach: %v", err)
	}
	if addr.PCIPath != "1e/01" {
		t.Errorf("pci path: got %q, want 1e/01 (bridge slot 0x1e, first disk slot)", addr.PCIPath)
	}
	if err := vm.DetachDisk(ctx, "d0"); err != nil {
		t.Fatalf("detach: %v", err)
	}
	want := []string{
		`add-fd {"opaque":"vessel-disk:d0"}`,
		`blockdev-add {"aio":"native","cache":{"direct":true,"no-flush":true},"driver":"file","filename":"/dev/fdset/1","node-name":"vd-d0","read-only":true}`,
		`device_add {"addr":"0x1","bus":"vessel-bridge0","drive":"vd-d0","driver":"virtio-blk-pci","id":"vdev-d0"}`,
		`device_del {"id":"vdev-d0"}`,
		`blockdev-del {"node-name":"vd-d0"}`,
		`remove-fd {"fdset-id":1}`,
	}
	got := qmpLog(t, cfg)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("qmp commands:\n got %q\nwant %q", got, want)
	}
}

// TestFakeDiskRollback checks that a refused device_add leaves no block node and no fd
// set, and that an AIO mode QEMU refuses is ErrNotImplemented and leaves nothing either.
func TestFakeDiskRollback(t *testing.T) {
	vm, cfg := startFakeBlock(t, hypervisor.BlockConfig{})
	ctx := fakeCtx(t)
	if _, err := vm.AttachDisk(ctx, hypervisor.Disk{ID: qemutest.FailMarker, File: diskFile(t)}); err == nil {
		t.Fatal("attach with a refused device_add: got nil error")
	}
	got := qmpLog(t, cfg)
	if n := len(got); n < 2 || !strings.HasPrefix(got[n-2], "blockdev-del ") || !strings.HasPrefix(got[n-1], "remove-fd ") {
		t.Errorf("undo of a failed attach: got %q, want blockdev-del then remove-fd last", got)
	}
	if ids, err := vm.Disks(ctx); err != nil || len(ids) != 0 {
		t.Errorf("disks after a failed attach: got %q, %v; want none", ids, err)
	}
	// The slot is free again.
	addr, err := vm.AttachDisk(ctx, hypervisor.Disk{ID: "ok", File: diskFile(t)})
	if err != nil || addr.PCIPath != "1e/01" {
		t.Errorf("attach after a failed one: got %+v, %v; want slot 01", addr, err)
	}

	vm2, cfg2 := startFakeBlock(t, hypervisor.BlockConfig{AIO: hypervisor.AIOIOUring})
	_, err = vm2.AttachDisk(ctx, hypervisor.Disk{ID: "u", File: diskFile(t)})
	if !errors.Is(err, errdefs.ErrNotImplemented) || !strings.Contains(err.Error(), "io_uring") {
		t.Errorf("attach with io_uring refused by qemu: got %v, want ErrNotImplemented naming io_uring", err)
	}
	got = qmpLog(t, cfg2)
	if n := len(got); n == 0 || !strings.HasPrefix(got[n-1], "remove-fd ") {
		t.Errorf("undo of a refused blockdev-add: got %q, want remove-fd last", got)
	}
}

// TestDiskRefusals checks what AttachDisk refuses before talking to QEMU.
func TestDiskRefusals(t *testing.T) {
	vm, _ := startFakeBlock(t, hypervisor.BlockConfig{})
	ctx := fakeCtx(t)
	dir, err := os.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	for _, tc := range []struct {
		name string
		d    hypervisor.Disk
		want error
	}{
		{"no file", hypervisor.Disk{ID: "a"}, errdefs.ErrInvalidArgument},
		{"long id", hypervisor.Disk{ID: strings.Repeat("a", 25), File: dir}, errdefs.ErrInvalidArgument},
		{"directory", hypervisor.Disk{ID: "dir", File: dir}, errdefs.ErrInvalidArgument},
	} {
		if _, err := vm.AttachDisk(ctx, tc.d); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
	if err := vm.DetachDisk(ctx, "nothing"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("detach of an unknown disk: got %v, want ErrNotFound", err)
	}
	cfg := baseConfig()
	cfg.Block = hypervisor.BlockConfig{AIO: hypervisor.AIONative}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "O_DIRECT") {
		t.Errorf("aio native without direct caching: got %v, want a refusal naming O_DIRECT", err)
	}
}

// TestFakeDiskSlowRelease checks a detach whose guest does not release the device before
// the deadline: it fails and keeps the disk; a second detach waits for the pending
// removal and completes it.
func TestFakeDiskSlowRelease(t *testing.T) {
	vm, cfg := startFakeBlock(t, hypervisor.BlockConfig{})
	ctx := fakeCtx(t)
	id := "d-" + qemutest.SlowMarker
	if _, err := vm.AttachDisk(ctx, hypervisor.Disk{ID: id, File: diskFile(t)}); err != nil {
		t.Fatalf("attach: %v", err)
	}
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if err := vm.DetachDisk(short, id); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("detach with a slow guest: got %v, want DeadlineExceeded", err)
	}
	if ids, err := vm.Disks(ctx); err != nil || len(ids) != 1 {
		t.Fatalf("disks after a detach that gave up: got %q, %v; want the disk still there", ids, err)
	}
	if err := vm.DetachDisk(ctx, id); err != nil {
		t.Fatalf("second detach: %v", err)
	}
	got := qmpLog(t, cfg)
	if n := len(got); n < 2 || !strings.HasPrefix(got[n-2], "blockdev-del ") || !strings.HasPrefix(got[n-1], "remove-fd ") {
		t.Errorf("qmp commands: got %q, want blockdev-del and remove-fd last", got)
	}
	if ids, err := vm.Disks(ctx); err != nil || len(ids) != 0 {
		t.Errorf("disks after the second detach: got %q, %v", ids, err)
	}
}

// TestFakeDiskSCSI checks the virtio-scsi driver: a scsi-hd on the VM's controller at an
// explicit scsi-id and LUN, and the conformance checks.
func TestFakeDiskSCSI(t *testing.T) {
	vm, cfg := startFakeBlock(t, hypervisor.BlockConfig{Driver: hypervisor.BlockVirtioSCSI})
	ctx := fakeCtx(t)
	addr, err := vm.AttachDisk(ctx, hypervisor.Disk{ID: "s0", File: diskFile(t)})
	if err != nil {
		t.Fatalf("attach: %v", err)
	}
	if addr != (hypervisor.DiskAddress{SCSIAddress: "1:0"}) {
		t.Errorf("address: got %+v, want scsi 1:0", addr)
	}
	want := `device_add {"bus":"vessel-scsi0.0","channel":0,"drive":"vd-s0","driver":"scsi-hd","id":"vdev-s0","lun":0,"scsi-id":1}`
	if got := qmpLog(t, cfg); len(got) != 3 || got[2] != want {
		t.Errorf("qmp commands: got %q, want %q third", got, want)
	}
	if err := vm.DetachDisk(ctx, "s0"); err != nil {
		t.Fatalf("detach: %v", err)
	}
	hvtest.CheckDisks(t, vm)
	if args := commandLine(&cfg, tcgLaunch); !slices.Contains(args, "virtio-scsi-pci,id=vessel-scsi0") {
		t.Errorf("command line without the scsi controller: %q", args)
	}
	base := baseConfig()
	if args := commandLine(&base, tcgLaunch); slices.Contains(args, "virtio-scsi-pci,id=vessel-scsi0") {
		t.Errorf("virtio-blk command line with a scsi controller: %q", args)
	}
}

// TestFakeDiskLimits checks that I/O limits put a throttle node, in a throttle group of the
// disk's own, over the file node, and that detaching removes all three.
func TestFakeDiskLimits(t *testing.T) {
	vm, cfg := startFakeBlock(t, hypervisor.BlockConfig{MaxBytesPerSec: 1 << 20, MaxIOPS: 100})
	ctx := fakeCtx(t)
	if _, err := vm.AttachDisk(ctx, hypervisor.Disk{ID: "t0", File: diskFile(t)}); err != nil {
		t.Fatalf("attach: %v", err)
	}
	if ids, err := vm.Disks(ctx); err != nil || len(ids) != 1 || ids[0] != "t0" {
		t.Errorf("disks: got %q, %v; want t0 (the file node is not a disk of its own)", ids, err)
	}
	if err := vm.DetachDisk(ctx, "t0"); err != nil {
		t.Fatalf("detach: %v", err)
	}
	want := []string{
		`add-fd {"opaque":"vessel-disk:t0"}`,
		`blockdev-add {"cache":{"direct":false,"no-flush":false},"driver":"file","filename":"/dev/fdset/1","node-name":"vdf-t0","read-only":false}`,
		`object-add {"id":"vtg-t0","limits":{"bps-total":1048576,"iops-total":100},"qom-type":"throttle-group"}`,
		`blockdev-add {"driver":"throttle","file":"vdf-t0","node-name":"vd-t0","read-only":false,"throttle-group":"vtg-t0"}`,
		`device_add {"addr":"0x1","bus":"vessel-bridge0","drive":"vd-t0","driver":"virtio-blk-pci","id":"vdev-t0"}`,
		`query-named-block-nodes {"flat":true}`,
		`device_del {"id":"vdev-t0"}`,
		`blockdev-del {"node-name":"vd-t0"}`,
		`blockdev-del {"node-name":"vdf-t0"}`,
		`object-del {"id":"vtg-t0"}`,
		`remove-fd {"fdset-id":1}`,
	}
	if got := qmpLog(t, cfg); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("qmp commands:\n got %q\nwant %q", got, want)
	}
}

// TestFakeDiskResize checks block_resize's arguments (the disk's top node and the size)
// and that a size that is no multiple of 512 and an unknown disk are refused.
func TestFakeDiskResize(t *testing.T) {
	vm, cfg := startFakeBlock(t, hypervisor.BlockConfig{})
	ctx := fakeCtx(t)
	if _, err := vm.AttachDisk(ctx, hypervisor.Disk{ID: "r0", File: diskFile(t)}); err != nil {
		t.Fatalf("attach: %v", err)
	}
	if err := vm.ResizeDisk(ctx, "r0", 2<<20); err != nil {
		t.Fatalf("resize: %v", err)
	}
	if err := vm.ResizeDisk(ctx, "r0", 1000); !errdefs.IsInvalidArgument(err) {
		t.Errorf("resize to 1000 bytes: got %v, want an invalid argument", err)
	}
	if err := vm.ResizeDisk(ctx, "nodisk", 2<<20); !errdefs.IsNotFound(err) {
		t.Errorf("resize of an unknown disk: got %v, want not found", err)
	}
	got := qmpLog(t, cfg)
	want := `block_resize {"node-name":"vd-r0","size":2097152}`
	if !slices.Contains(got, want) {
		t.Errorf("qmp commands: got %q, want %q among them", got, want)
	}
	if n := len(got); got[n-1] != want {
		t.Errorf("last qmp command: got %q, want %q (refused sizes reach no QMP)", got[n-1], want)
	}
}
