// Package testutil holds test gates (root, VM) and builders for local test inputs: the
// guest image location and busybox OCI bundles. Nothing here is used by production code.
package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// InCI reports whether the tests run in CI (CI=true). In CI a missing prerequisite is a
// failure, not a skip: a green run must mean the tests ran.
func InCI() bool { return os.Getenv("CI") == "true" }

// skipOrFail skips locally and fails in CI.
func skipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	if InCI() {
		t.Fatalf("CI prerequisite missing: "+format, args...)
	}
	t.Skipf(format, args...)
}

// RequiresRoot skips (fails in CI) unless the test runs as root.
func RequiresRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, "test needs root")
	}
}

// RequiresIntegration gates tests that boot VMs or drive daemons: they run only with
// VESSEL_INTEGRATION=1 (set by `make integration`), so `make test` stays fast and rootless.
func RequiresIntegration(t testing.TB) {
	t.Helper()
	if os.Getenv("VESSEL_INTEGRATION") != "1" {
		t.Skip("integration test: run with VESSEL_INTEGRATION=1 (make integration)")
	}
}

// Guest is a built guest image.
type Guest struct {
	Kernel string
	Initrd string
}

// DefaultGuestDir is where `make image` installs the guest kernel and initramfs.
const DefaultGuestDir = "/var/lib/vessel/guest"

// GuestDir is VESSEL_GUEST_DIR or DefaultGuestDir.
func GuestDir() string {
	if d := os.Getenv("VESSEL_GUEST_DIR"); d != "" {
		return d
	}
	return DefaultGuestDir
}

// GuestIn is the guest image `make image` writes into dir.
func GuestIn(dir string) Guest {
	return Guest{Kernel: filepath.Join(dir, "vmlinux"), Initrd: filepath.Join(dir, "initramfs.img")}
}

// Config is a Vessel configuration that boots g, followed by extra (more TOML).
func (g Guest) Config(extra string) []byte {
	return fmt.Appendf(nil, "[hypervisor]\nkernel = %q\ninitrd = %q\n%s", g.Kernel, g.Initrd, extra)
}

// RequiresVM gates a test that boots a VM: integration mode, root, QEMU on PATH and a
// built guest image. It returns the image.
func RequiresVM(t testing.TB) Guest {
	t.Helper()
	RequiresIntegration(t)
	RequiresRoot(t)
	if _, err := os.Stat("/usr/bin/qemu-system-x86_64"); err != nil {
		skipOrFail(t, "qemu-system-x86_64 not installed: %v", err)
	}
	g := GuestIn(GuestDir())
	for _, p := range []string{g.Kernel, g.Initrd} {
		if _, err := os.Stat(p); err != nil {
			skipOrFail(t, "guest image missing (run `make image`): %v", err)
		}
	}
	return g
}

// RepoRoot returns the repository root (the directory holding go.mod).
func RepoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate testutil source")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// WaitFor polls cond (every 50 ms, up to a minute) for a state that has no event to wait
// on, and fails the test naming what it waited for when the minute is up.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// RequiresTool returns the path of the program name on PATH; when it is missing the test
// is skipped locally and fails in CI.
func RequiresTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		skipOrFail(t, "%s not installed (hack/install-deps.sh installs it): %v", name, err)
	}
	return p
}
