package qemu

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/hypervisor/qemu/qemutest"
)

// startMemFake starts a fake VM of 256 MiB that may grow to 2 GiB in 4 DIMM slots, and
// grows it by a 128 MiB DIMM (vessel-dimm-0) and a 512 MiB one (vessel-dimm-1).
func startMemFake(t *testing.T, name string) (*VM, hypervisor.Config) {
	t.Helper()
	ctx := fakeCtx(t)
	vm, cfg, err := startFakeWith(t, qemutest.Normal, name, ctx, func(c *hypervisor.Config) {
		c.MemoryMiB, c.MaxMemoryMiB, c.MemorySlots = 256, 2048, 4
	})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	for _, mib := range []uint32{384, 896} {
		if err := vm.Grow(ctx, 1, mib); err != nil {
			t.Fatalf("grow to %d MiB: %v", mib, err)
		}
	}
	if _, mem := vm.Size(); mem != 896 {
		t.Fatalf("size after growing: %d MiB, want 896", mem)
	}
	return vm, cfg
}

// qmpCommands are the fake's memory and disk commands named command (qemutest writes them to
// qemu.log), the arguments of each as JSON.
func qmpCommands(t *testing.T, cfg hypervisor.Config, command string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(cfg.StateDir, qemuLogName))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "qmp: "+command+" "); ok {
			out = append(out, rest)
		}
	}
	return out
}

func TestFakeShrinkMemory(t *testing.T) {
	ctx := fakeCtx(t)
	vm, cfg := startMemFake(t, "")
	const gib4 = 4 << 30
	for _, tc := range []struct {
		want uint32
		got  []hypervisor.MemoryRange
	}{
		{1000, nil}, // above the size: nothing
		{800, nil},  // the 128 MiB DIMM would leave 768
		{400, []hypervisor.MemoryRange{{Addr: gib4, Size: 128 << 20}}}, // the 512 MiB DIMM would leave 384
		{384, []hypervisor.MemoryRange{{Addr: gib4 + 128<<20, Size: 512 << 20}}},
		{0, []hypervisor.MemoryRange{{Addr: gib4 + 128<<20, Size: 512 << 20}, {Addr: gib4, Size: 128 << 20}}},
	} {
		got, err := vm.MemoryRanges(ctx, tc.want)
		if err != nil {
			t.Fatalf("MemoryRanges(%d): %v", tc.want, err)
		}
		if !slices.Equal(got, tc.got) {
			t.Errorf("MemoryRanges(%d) = %v, want %v", tc.want, got, tc.got)
		}
	}

	if err := vm.ShrinkMemory(ctx, 384); err != nil {
		t.Fatalf("shrink to 384 MiB: %v", err)
	}
	if _, mem := vm.Size(); mem != 384 {
		t.Errorf("size after the shrink: %d MiB, want 384", mem)
	}
	if got := qmpCommands(t, cfg, "device_del"); len(got) != 1 || !strings.Contains(got[0], `"vessel-dimm-1"`) {
		t.Errorf("device_del commands: %q, want one of vessel-dimm-1", got)
	}
	if got := qmpCommands(t, cfg, "object-del"); len(got) != 1 || !strings.Contains(got[0], `"vessel-mem-1"`) {
		t.Errorf("object-del commands: %q, want one of vessel-mem-1", got)
	}

	// A new DIMM gets a new id, and a shrink to below the boot size stops at it.
	if err := vm.Grow(ctx, 1, 640); err != nil {
		t.Fatalf("grow again: %v", err)
	}
	if got := qmpCommands(t, cfg, "device_add"); len(got) != 3 || !strings.Contains(got[2], `"vessel-dimm-2"`) {
		t.Errorf("device_add commands: %q, want the third of vessel-dimm-2", got)
	}
	if err := vm.ShrinkMemory(ctx, 0); err != nil {
		t.Fatalf("shrink to the boot size: %v", err)
	}
	if _, mem := vm.Size(); mem != 256 {
		t.Errorf("size after the shrink to the boot size: %d MiB, want 256", mem)
	}
	if got, err := vm.MemoryRanges(ctx, 0); err != nil || len(got) != 0 {
		t.Errorf("MemoryRanges at the boot size: %v, %v; want none", got, err)
	}

	// A paused guest cannot release memory.
	if err := vm.Grow(ctx, 1, 384); err != nil {
		t.Fatal(err)
	}
	if err := vm.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	if err := vm.ShrinkMemory(ctx, 0); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("shrink of a paused vm: %v, want FailedPrecondition", err)
	}
}

// TestFakeShrinkMemoryRefused: a guest that refuses the eject (ACPI _OST device busy) keeps
// the DIMM, in QEMU and in Size, and the backend is not deleted.
func TestFakeShrinkMemoryRefused(t *testing.T) {
	ctx := fakeCtx(t)
	vm, cfg := startMemFake(t, qemutest.DIMMBusyMarker)
	err := vm.ShrinkMemory(ctx, 256)
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "status 0x82") || !strings.Contains(err.Error(), "vessel-dimm-1") {
		t.Fatalf("shrink: %v, want FailedPrecondition naming vessel-dimm-1 and status 0x82", err)
	}
	if _, mem := vm.Size(); mem != 896 {
		t.Errorf("size after a refused unplug: %d MiB, want 896", mem)
	}
	if got := qmpCommands(t, cfg, "object-del"); len(got) != 0 {
		t.Errorf("object-del after a refused unplug: %q", got)
	}
	ranges, err := vm.MemoryRanges(ctx, 256)
	if err != nil || len(ranges) != 2 {
		t.Errorf("MemoryRanges after a refused unplug: %v, %v; want both dimms", ranges, err)
	}
}

// TestFakeShrinkMemoryLate: the guest releases the DIMM after the shrink gave up waiting;
// the VM's size follows QEMU's DEVICE_DELETED, and the next shrink deletes the backend.
func TestFakeShrinkMemoryLate(t *testing.T) {
	vm, cfg := startMemFake(t, qemutest.DIMMLateMarker)
	short, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := vm.ShrinkMemory(short, 384)
	if err == nil || !strings.Contains(err.Error(), "did not release the dimm") {
		t.Fatalf("shrink: %v, want an error saying the guest did not release the dimm", err)
	}
	if _, mem := vm.Size(); mem != 896 {
		t.Errorf("size while the guest has not released the dimm: %d MiB, want 896", mem)
	}
	ctx := fakeCtx(t)
	// The next command brings the late DEVICE_DELETED.
	if _, err := vm.MemoryRanges(ctx, 0); err != nil {
		t.Logf("MemoryRanges as the release comes: %v", err)
	}
	for _, mem := vm.Size(); mem != 384; _, mem = vm.Size() {
		select {
		case <-ctx.Done():
			t.Fatalf("size after the late release: %d MiB, want 384", mem)
		case <-time.After(10 * time.Millisecond):
		}
	}
	if err := vm.ShrinkMemory(ctx, 384); err != nil {
		t.Fatalf("shrink after the late release: %v", err)
	}
	if got := qmpCommands(t, cfg, "object-del"); len(got) != 1 || !strings.Contains(got[0], `"vessel-mem-1"`) {
		t.Errorf("object-del commands: %q, want one of vessel-mem-1", got)
	}
}

// TestFakeReplacementMiB: a shrink that would keep a DIMM larger than needed gets a
// smaller one plugged first, and then leaves the VM at the size asked for, rounded up to
// 128 MiB above the boot size.
func TestFakeReplacementMiB(t *testing.T) {
	ctx := fakeCtx(t)
	vm, _ := startMemFake(t, "")
	for _, tc := range []struct{ want, add uint32 }{
		{1000, 0}, {384, 0}, {300, 0}, {0, 0},
		// 640 (600 rounded up): the 128 MiB DIMM goes, leaving 768; a 384 MiB DIMM in
		// place of the 512 MiB one makes 640.
		{600, 384},
	} {
		if got := vm.ReplacementMiB(tc.want); got != tc.add {
			t.Errorf("ReplacementMiB(%d) = %d, want %d", tc.want, got, tc.add)
		}
	}
	if err := vm.Grow(ctx, 1, 896+384); err != nil {
		t.Fatal(err)
	}
	if err := vm.ShrinkMemory(ctx, 600); err != nil {
		t.Fatal(err)
	}
	if _, mem := vm.Size(); mem != 640 {
		t.Errorf("size after the shrink: %d MiB, want 640", mem)
	}
	// No room under the maximum for a replacement: none.
	vm2, _, err := startFakeWith(t, qemutest.Normal, "nomax", ctx, func(c *hypervisor.Config) {
		c.MemoryMiB, c.MaxMemoryMiB, c.MemorySlots = 256, 1280, 4
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := vm2.Grow(ctx, 1, 1280); err != nil {
		t.Fatal(err)
	}
	if got := vm2.ReplacementMiB(300); got != 0 {
		t.Errorf("ReplacementMiB at the maximum = %d, want 0", got)
	}
}
