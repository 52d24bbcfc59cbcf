//go:build linux

package agent

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
)

// fakeMemory makes a fake sysfs memory directory with 128 MiB blocks in the given states
// (by block number) and a meminfo with availMiB available.
func fakeMemory(t *testing.T, states map[int]string, availMiB int) (Config, func(int) string) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.SysDir = t.TempDir()
	cfg.MemInfo = filepath.Join(t.TempDir(), "meminfo")
	dir := filepath.Join(cfg.SysDir, "devices/system/memory")
	for b, st := range states {
		d := filepath.Join(dir, "memory"+strconv.Itoa(b))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "state"), []byte(st+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "block_size_bytes"), []byte("8000000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mi := "MemTotal:        1000000 kB\nMemFree:          500000 kB\nMemAvailable:    " + strconv.Itoa(availMiB*1024) + " kB\n"
	if err := os.WriteFile(cfg.MemInfo, []byte(mi), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg, func(b int) string {
		t.Helper()
		s, err := os.ReadFile(filepath.Join(dir, "memory"+strconv.Itoa(b), "state"))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(s))
	}
}

const blk = 128 << 20

func TestOfflineMemory(t *testing.T) {
	ctx := context.Background()
	t.Run("offlines the blocks of the ranges, highest first, skipping offline ones", func(t *testing.T) {
		cfg, state := fakeMemory(t, map[int]string{0: "online", 8: "online", 9: "offline", 10: "online", 11: "online"}, 900)
		resp, err := NewService(cfg).OfflineMemory(ctx, &agentv1.OfflineMemoryRequest{Ranges: []*agentv1.MemoryRange{
			{Addr: 10 * blk, Size: 2 * blk}, {Addr: 8 * blk, Size: 2 * blk},
		}})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := resp.GetBlocks(), []uint64{11, 10, 8}; !slices.Equal(got, want) {
			t.Errorf("offlined %v, want %v", got, want)
		}
		for b, want := range map[int]string{0: "online", 8: "offline", 9: "offline", 10: "offline", 11: "offline"} {
			if got := state(b); got != want {
				t.Errorf("memory%d: %q, want %q", b, got, want)
			}
		}
	})
	t.Run("refuses when the guest has no room", func(t *testing.T) {
		// 256 MiB to give up, 300 MiB available: less than the 64 MiB margin would stay.
		cfg, state := fakeMemory(t, map[int]string{8: "online", 9: "online"}, 300)
		_, err := NewService(cfg).OfflineMemory(ctx, &agentv1.OfflineMemoryRequest{Ranges: []*agentv1.MemoryRange{{Addr: 8 * blk, Size: 2 * blk}}})
		if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "300 MiB available") {
			t.Fatalf("got %v, want FailedPrecondition naming the 300 MiB available", err)
		}
		if state(8) != "online" || state(9) != "online" {
			t.Error("blocks went offline after a refusal")
		}
	})
	t.Run("a block that is not there", func(t *testing.T) {
		cfg, _ := fakeMemory(t, map[int]string{8: "online"}, 900)
		_, err := NewService(cfg).OfflineMemory(ctx, &agentv1.OfflineMemoryRequest{Ranges: []*agentv1.MemoryRange{{Addr: 8 * blk, Size: 2 * blk}}})
		if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "block 9") {
			t.Fatalf("got %v, want NotFound naming block 9", err)
		}
	})
	t.Run("a range not made of whole blocks", func(t *testing.T) {
		cfg, _ := fakeMemory(t, map[int]string{8: "online"}, 900)
		_, err := NewService(cfg).OfflineMemory(ctx, &agentv1.OfflineMemoryRequest{Ranges: []*agentv1.MemoryRange{{Addr: 8*blk + 4096, Size: blk}}})
		if !errdefs.IsInvalidArgument(err) {
			t.Fatalf("got %v, want InvalidArgument", err)
		}
	})
	t.Run("a failed offline onlines again, movable, what the call offlined", func(t *testing.T) {
		cfg, state := fakeMemory(t, map[int]string{8: "online", 9: "online"}, 900)
		// memory8's state cannot be written, even by root: a block the kernel refuses.
		ctl := filepath.Join(cfg.SysDir, "devices/system/memory/memory8/state")
		if err := os.Remove(ctl); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("/proc/sys/kernel/ostype", ctl); err != nil {
			t.Fatal(err)
		}
		_, err := NewService(cfg).OfflineMemory(ctx, &agentv1.OfflineMemoryRequest{Ranges: []*agentv1.MemoryRange{{Addr: 8 * blk, Size: 2 * blk}}})
		if err == nil || !strings.Contains(err.Error(), "offline memory block 8") {
			t.Fatalf("got %v, want an error naming block 8", err)
		}
		if got := state(9); got != "online_movable" {
			t.Errorf("memory9 after the failure: %q, want online_movable", got)
		}
	})
}

func TestOnlineMemoryMovable(t *testing.T) {
	cfg, state := fakeMemory(t, map[int]string{0: "online", 8: "offline"}, 900)
	if err := onlineMemory(filepath.Join(cfg.SysDir, "devices/system/memory")); err != nil {
		t.Fatal(err)
	}
	if got := state(8); got != "online_movable" {
		t.Errorf("memory8: %q, want online_movable", got)
	}
	if got := state(0); got != "online" {
		t.Errorf("memory0: %q, want it untouched", got)
	}
}
