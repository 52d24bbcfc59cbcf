package network

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/vessel-containers/vessel/internal/network/nettest"
	"github.com/vessel-containers/vessel/internal/testutil"
)

// sameNetNS tells whether the namespace files a and b are one namespace.
func sameNetNS(t *testing.T, a, b string) bool {
	t.Helper()
	var sa, sb unix.Stat_t
	if err := unix.Stat(a, &sa); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat(b, &sb); err != nil {
		t.Fatal(err)
	}
	return sa.Dev == sb.Dev && sa.Ino == sb.Ino
}

// TestCreateNetNS makes a namespace pinned in a sandbox directory, checks that it is a new
// one with loopback only, and that Teardown unpins and removes it (twice is no error).
func TestCreateNetNS(t *testing.T) {
	testutil.RequiresRoot(t)
	dir := t.TempDir()
	path, err := CreateNetNS(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := RemoveNetNS(dir); err != nil {
			t.Error(err)
		}
	})
	if path != filepath.Join(dir, NetNSName) {
		t.Errorf("path: got %s, want %s", path, filepath.Join(dir, NetNSName))
	}
	if sameNetNS(t, path, "/proc/thread-self/ns/net") {
		t.Fatal("the new namespace is the test's own")
	}
	if _, err := CreateNetNS(dir); err == nil {
		t.Error("a second CreateNetNS in the same directory succeeded")
	}
	// The namespace holds loopback only: Attach finds nothing to attach and records it.
	att, err := Attach(context.Background(), dir, Config{NetNS: path})
	if err != nil {
		t.Fatal(err)
	}
	if len(att.NICs) != 0 {
		t.Errorf("attached %d NICs in a new namespace", len(att.NICs))
	}
	if err := Teardown(context.Background(), dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("pin %s after teardown: %v", path, err)
	}
	if err := Teardown(context.Background(), dir); err != nil {
		t.Errorf("second teardown: %v", err)
	}
}

// TestInNetNSPath checks that a process started in InNetNSPath's fn is in the namespace,
// and that a missing namespace is ErrNotFound.
func TestInNetNSPath(t *testing.T) {
	testutil.RequiresRoot(t)
	pod := nettest.New(t)
	cmd := exec.Command("sleep", "60")
	if err := InNetNSPath(pod.Path, cmd.Start); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	proc := fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid)
	if !sameNetNS(t, proc, pod.Path) {
		t.Errorf("%s of a process started in the namespace is not %s", proc, pod.Path)
	}
	err := InNetNSPath(filepath.Join(t.TempDir(), "missing"), func() error {
		t.Error("fn ran for a missing namespace")
		return nil
	})
	if !errdefs.IsNotFound(err) {
		t.Errorf("missing namespace: got %v, want ErrNotFound", err)
	}
}
