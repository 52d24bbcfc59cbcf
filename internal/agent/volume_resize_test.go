//go:build linux

package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestResizeBlocks: the new block count is the size in whole blocks; fewer blocks than
// the file system has is refused with both sizes named.
func TestResizeBlocks(t *testing.T) {
	n, err := resizeBlocks(32<<20, 4096, 4096-300)
	if err != nil || n != 8192 {
		t.Errorf("32 MiB in 4 KiB blocks: got %d, %v; want 8192", n, err)
	}
	if n, err := resizeBlocks(32<<20+1000, 1024, 16384); err != nil || n != 32768 {
		t.Errorf("32 MiB + 1000 bytes in 1 KiB blocks: got %d, %v; want 32768 (whole blocks)", n, err)
	}
	_, err = resizeBlocks(8<<20, 4096, 4096)
	if err == nil || !strings.Contains(err.Error(), "8388608") || !strings.Contains(err.Error(), "16777216") {
		t.Errorf("shrink 16 MiB to 8 MiB: got %v, want an error naming both sizes", err)
	}
	if _, err := resizeBlocks(1<<20, 0, 0); err == nil {
		t.Error("block size 0: got nil error")
	}
}

// TestWaitDiskSize: a disk already large enough needs no wait; one that stays small is
// an error naming both sizes once the context ends.
func TestWaitDiskSize(t *testing.T) {
	f := filepath.Join(t.TempDir(), "size")
	if err := os.WriteFile(f, []byte("65536\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := waitDiskSize(context.Background(), f, 32<<20); err != nil {
		t.Errorf("65536 sectors for 32 MiB: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := waitDiskSize(ctx, f, 64<<20)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "33554432") || !strings.Contains(err.Error(), "67108864") {
		t.Errorf("65536 sectors for 64 MiB: got %v, want context.Canceled naming both sizes", err)
	}
	if err := os.WriteFile(f, []byte("x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := waitDiskSize(context.Background(), f, 1); err == nil {
		t.Error("unreadable size: got nil error")
	}
}

// TestFSTypeName: a refused file system is named.
func TestFSTypeName(t *testing.T) {
	if got := fsTypeName(unix.XFS_SUPER_MAGIC); got != "xfs" {
		t.Errorf("xfs: got %q", got)
	}
	if got := fsTypeName(0x1234); got != "of type 0x1234" {
		t.Errorf("unknown: got %q", got)
	}
}
