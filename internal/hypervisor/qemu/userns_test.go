package qemu

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

// TestCheckReadable: a kernel the unprivileged VMM cannot read is refused by name; one
// below a directory the VMM's ids cannot search (0700, as mktemp -d makes it) passes,
// since the VMM reaches it through the clone in its root.
func TestCheckReadable(t *testing.T) {
	closed := t.TempDir()
	if err := os.Chmod(closed, 0o700); err != nil {
		t.Fatal(err)
	}
	open, secret := filepath.Join(closed, "kernel"), filepath.Join(closed, "secret")
	if err := os.WriteFile(open, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(secret, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	const uid = 3000000000 // nobody's
	if err := checkReadable("kernel", open, uid, uid); err != nil {
		t.Errorf("a 0644 kernel below a 0700 directory refused: %v", err)
	}
	err := checkReadable("initrd", secret, uid, uid)
	if !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), secret) {
		t.Errorf("a 0600 file of another owner: got %v, want ErrFailedPrecondition naming it", err)
	}
	me := uint32(os.Getuid())
	if err := checkReadable("initrd", secret, me, me); err != nil {
		t.Errorf("its owner is refused: %v", err)
	}
	if err := checkReadable("kernel", filepath.Join(closed, "missing"), uid, uid); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a missing kernel: got %v, want ErrNotExist", err)
	}
}
