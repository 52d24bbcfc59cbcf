package testutil

import (
	"os"
	"path/filepath"
	"testing"
)

// NewQEMUDir is where hack/install-deps.sh puts a QEMU newer than Debian 12's 7.2 (10.0,
// from bookworm-backports), with its data files beside it: bin/qemu-system-x86_64 and
// share/qemu. It is off PATH, so Debian's QEMU stays the default; tests of what needs
// QEMU 8.2 or newer (a VM template restored read-only by an unprivileged VMM) use it.
const NewQEMUDir = "/usr/local/libexec/vessel/qemu10"

// RequiresNewQEMU returns the path of the QEMU in NewQEMUDir; when it is missing the test
// is skipped locally and fails in CI.
func RequiresNewQEMU(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(NewQEMUDir, "bin", "qemu-system-x86_64")
	if _, err := os.Stat(bin); err != nil {
		skipOrFail(t, "QEMU 10 is not installed (hack/install-deps.sh puts it into %s): %v", NewQEMUDir, err)
	}
	return bin
}
