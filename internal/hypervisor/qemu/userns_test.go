package qemu

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckReachable: a file an unprivileged VMM cannot reach is named with the
// directory that stops it; reachable ones pass.
func TestCheckReachable(t *testing.T) {
	top := t.TempDir()
	if err := os.Chmod(top, 0o755); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(top, "open")
	closed := filepath.Join(top, "closed")
	for _, d := range []string{open, closed} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "kernel"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(closed, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(open, "secret"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	const uid = 3000000000 // nobody's
	// t.TempDir's parents may be closed to others on some hosts; then only the
	// refusals can be checked.
	parentsOpen := checkReachable("dir", top, uid, uid, true) == nil
	if err := checkReachable("kernel", filepath.Join(open, "kernel"), uid, uid, false); parentsOpen && err != nil {
		t.Errorf("reachable file refused: %v", err)
	}
	if err := checkReachable("kernel", filepath.Join(closed, "kernel"), uid, uid, false); err == nil {
		t.Error("a file under a 0700 directory passed")
	} else if parentsOpen && !strings.Contains(err.Error(), closed+" ") {
		t.Errorf("error does not name the closed directory: %v", err)
	}
	if err := checkReachable("initrd", filepath.Join(open, "secret"), uid, uid, false); err == nil {
		t.Error("a 0600 file of another owner passed")
	}
	if err := checkReachable("shared dir", closed, uid, uid, true); err == nil {
		t.Error("a 0700 directory of another owner passed")
	}
	me := uint32(os.Getuid())
	if err := checkReachable("shared dir", closed, me, me, true); err != nil && parentsOpen {
		t.Errorf("its owner is refused: %v", err)
	}
}
