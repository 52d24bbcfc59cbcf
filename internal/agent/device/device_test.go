//go:build linux

package device

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

func TestDevpathPattern(t *testing.T) {
	re, err := devpathPattern("1e/01")
	if err != nil {
		t.Fatal(err)
	}
	checkPattern(t, re, map[string]string{
		"/devices/pci0000:00/0000:00:1e.0/0000:01:01.0/virtio3/block/vda":      "vda",
		"/devices/pci0000:00/0000:00:1e.0/0000:02:01.0/virtio3/block/vdb":      "vdb",
		"/devices/pci0000:00/0000:00:1e.0/0000:01:02.0/virtio3/block/vda":      "",
		"/devices/pci0000:00/0000:00:1e.0/0000:01:01.0/virtio3/block/vda/vda1": "",
		"/devices/pci0000:00/0000:00:01.0/0000:01:01.0/virtio3/block/vda":      "",
	})
	for _, bad := range []string{"", "1e/1", "1E/01", "1e/01/", "../01"} {
		if _, err := devpathPattern(bad); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("pci path %q: got %v, want ErrInvalidArgument", bad, err)
		}
	}
}

func TestParseUevent(t *testing.T) {
	ev := parseUevent([]byte("add@/devices/x/block/vda\x00ACTION=add\x00DEVPATH=/devices/x/block/vda\x00SUBSYSTEM=block\x00MAJOR=254\x00MINOR=16\x00DEVNAME=vdb\x00DEVTYPE=disk\x00"))
	for k, want := range map[string]string{"ACTION": "add", "SUBSYSTEM": "block", "MAJOR": "254", "MINOR": "16", "DEVNAME": "vdb", "DEVTYPE": "disk"} {
		if ev[k] != want {
			t.Errorf("%s: got %q, want %q", k, ev[k], want)
		}
	}
}

// TestFindInSysfs builds a fake sysfs: /sys/block/vda links to the disk under the PCI
// device, as the kernel lays it out.
func TestFindInSysfs(t *testing.T) {
	sys := t.TempDir()
	disk := filepath.Join(sys, "devices/pci0000:00/0000:00:1e.0/0000:01:03.0/virtio5/block/vdc")
	if err := os.MkdirAll(disk, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(disk, "dev"), []byte("254:32\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(sys, "block"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../devices/pci0000:00/0000:00:1e.0/0000:01:03.0/virtio5/block/vdc", filepath.Join(sys, "block/vdc")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := WaitBlock(ctx, sys, "1e/03")
	if err != nil {
		t.Fatalf("present disk: %v", err)
	}
	if b != (Block{Name: "vdc", Major: 254, Minor: 32}) || b.Path() != "/dev/vdc" {
		t.Errorf("got %+v", b)
	}
	// A disk that never comes: the wait ends with the context.
	short, cancel2 := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel2()
	if _, err := WaitBlock(short, sys, "1e/04"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("absent disk: got %v, want DeadlineExceeded", err)
	}
}

func TestSCSIPattern(t *testing.T) {
	re, err := scsiPattern("3:0")
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]bool{
		"/devices/pci0000:00/0000:00:05.0/virtio4/host0/target0:0:3/0:0:3:0/block/sdb":      true,
		"/devices/pci0000:00/0000:00:05.0/virtio4/host0/target0:0:3/0:0:3:1/block/sdb":      false,
		"/devices/pci0000:00/0000:00:05.0/virtio4/host0/target0:0:13/0:0:13:0/block/sdb":    false,
		"/devices/pci0000:00/0000:00:05.0/virtio4/host0/target0:0:3/0:0:3:0/block/sdb/sdb1": false,
	} {
		if got := re.MatchString(path); got != want {
			t.Errorf("%s: got %v, want %v", path, got, want)
		}
	}
	for _, bad := range []string{"", "3", "a:0", "3:0:1", "1e/01"} {
		if _, err := scsiPattern(bad); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("scsi address %q: got %v, want ErrInvalidArgument", bad, err)
		}
	}
}

// TestNetPattern matches the interface of a NIC in a bridge slot, and nothing else.
func TestNetPattern(t *testing.T) {
	re, err := netPattern("1e/02")
	if err != nil {
		t.Fatal(err)
	}
	checkPattern(t, re, map[string]string{
		"/devices/pci0000:00/0000:00:1e.0/0000:01:02.0/virtio4/net/eth1":        "eth1",
		"/devices/pci0000:00/0000:00:1e.0/0000:01:01.0/virtio4/net/eth1":        "",
		"/devices/pci0000:00/0000:00:1e.0/0000:01:02.0/virtio4/block/vda":       "",
		"/devices/pci0000:00/0000:00:1e.0/0000:01:02.0/virtio4/net/eth1/queues": "",
	})
}

// TestFindNetInSysfs builds a fake sysfs where /sys/class/net/eth1 links to the interface
// under the PCI device, as the kernel lays it out.
func TestFindNetInSysfs(t *testing.T) {
	sys := t.TempDir()
	dev := filepath.Join(sys, "devices/pci0000:00/0000:00:1e.0/0000:01:02.0/virtio4/net/eth1")
	if err := os.MkdirAll(dev, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(sys, "class/net"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../devices/pci0000:00/0000:00:1e.0/0000:01:02.0/virtio4/net/eth1", filepath.Join(sys, "class/net/eth1")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if got, err := WaitNet(ctx, sys, "1e/02"); err != nil || got != "eth1" {
		t.Fatalf("got %q, %v; want eth1", got, err)
	}
	re, _ := netPattern("1e/03")
	if got, ok := findNetInSysfs(sys, re); ok {
		t.Fatalf("slot 3: got %q, want none", got)
	}
}

// checkPattern matches each device path of cases with re and wants the name it maps to
// (its first group), or no match for "".
func checkPattern(t *testing.T, re *regexp.Regexp, cases map[string]string) {
	t.Helper()
	for path, want := range cases {
		got := ""
		if m := re.FindStringSubmatch(path); m != nil {
			got = m[1]
		}
		if got != want {
			t.Errorf("%s: got %q, want %q", path, got, want)
		}
	}
}
