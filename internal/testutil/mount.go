package testutil

import (
	"testing"

	"golang.org/x/sys/unix"
)

// Mount mounts source on target as unix.Mount does, failing the test on error, and
// detaches it when the test ends unless the test called the returned unmounted, which
// says the test took the mount away itself.
func Mount(t testing.TB, source, target, fstype string, flags uintptr, data string) (unmounted func()) {
	t.Helper()
	if err := unix.Mount(source, target, fstype, flags, data); err != nil {
		t.Fatalf("mount %s on %s: %v", source, target, err)
	}
	mounted := true
	t.Cleanup(func() {
		if mounted {
			_ = unix.Unmount(target, unix.MNT_DETACH)
		}
	})
	return func() { mounted = false }
}
