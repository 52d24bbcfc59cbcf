package sandbox

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// resizeRecorder is a hypervisor.DiskResizer that records its calls as "id=size".
type resizeRecorder struct{ calls []string }

func (r *resizeRecorder) ResizeDisk(_ context.Context, id string, size uint64) error {
	r.calls = append(r.calls, fmt.Sprintf("%s=%d", id, size))
	return nil
}

// TestResizeDiskChecks: the host-side checks of a resize of a disk backed by a regular
// file: an unattached file, a read-only disk, a shrink of the disk and a size that would
// cut the file are refused naming the sizes, before any block_resize; a larger size
// grows the disk once and the same size again grows nothing.
func TestResizeDiskChecks(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 16<<20); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(img, &st); err != nil {
		t.Fatal(err)
	}
	s := &Sandbox{id: "sb1"}
	r := &resizeRecorder{}
	ctx := context.Background()
	if _, err := s.resizeDisk(ctx, r, img, 32<<20); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), img) {
		t.Errorf("unattached: got %v, want not found naming %s", err, img)
	}
	d := &attachedDisk{id: "disk0", size: 16 << 20, readOnly: true, refs: 1}
	s.disks.byKey = map[diskKey]*attachedDisk{keyOf(&st): d}
	if _, err := s.resizeDisk(ctx, r, img, 32<<20); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("read-only: got %v, want a failed precondition", err)
	}
	d.readOnly = false
	if _, err := s.resizeDisk(ctx, r, img, 8<<20); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "8388608") || !strings.Contains(err.Error(), "16777216") {
		t.Errorf("shrink: got %v, want an invalid argument naming both sizes", err)
	}
	if err := os.Truncate(img, 48<<20); err != nil {
		t.Fatal(err)
	}
	if _, err := s.resizeDisk(ctx, r, img, 32<<20); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "50331648") {
		t.Errorf("size below the grown file: got %v, want an invalid argument naming the file's size", err)
	}
	if len(r.calls) != 0 {
		t.Errorf("refused resizes reached the hypervisor: %q", r.calls)
	}
	for range 2 {
		id, err := s.resizeDisk(ctx, r, img, 48<<20)
		if err != nil || id != "disk0" {
			t.Fatalf("grow to 48 MiB: got %q, %v", id, err)
		}
	}
	if want := []string{"disk0=50331648"}; !slices.Equal(r.calls, want) || d.size != 48<<20 {
		t.Errorf("grow twice to 48 MiB: calls %q, disk size %d; want %q and 48 MiB", r.calls, d.size, want)
	}
}
