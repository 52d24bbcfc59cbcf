package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// DiskImage makes a sizeMiB file in dir, with an ext4 file system made from the directory
// src (none when src is empty), and returns its path.
func DiskImage(t testing.TB, dir string, sizeMiB int64, src string) string {
	t.Helper()
	file := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(file, sizeMiB<<20); err != nil {
		t.Fatal(err)
	}
	if src != "" {
		if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-d", src, file).CombinedOutput(); err != nil {
			t.Fatalf("mkfs.ext4: %v: %s", err, out)
		}
	}
	return file
}

// LoopDevice attaches file to a free loop device, detached again at test cleanup, and
// returns the device's path.
func LoopDevice(t testing.TB, file string) string {
	t.Helper()
	out, err := exec.Command("losetup", "--find", "--show", file).Output()
	if err != nil {
		t.Fatalf("losetup: %v", err)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("detach %s: %v: %s", dev, err, out)
		}
	})
	return dev
}
