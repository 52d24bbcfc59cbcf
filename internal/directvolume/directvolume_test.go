package directvolume

import (
	"testing"

	"github.com/containerd/errdefs"
)

func TestRecords(t *testing.T) {
	root := t.TempDir()
	const vol = "/var/lib/kubelet/pods/p1/volumes/kubernetes.io~csi/pv1/mount"
	info := MountInfo{VolumeType: "block", Device: "/dev/sdb", FSType: "ext4", Options: []string{"errors=remount-ro"}}
	if _, err := Lookup(root, vol); !errdefs.IsNotFound(err) {
		t.Fatalf("lookup before add: %v, want not found", err)
	}
	if err := Add(root, vol, info); err != nil {
		t.Fatal(err)
	}
	if err := Add(root, vol, info); !errdefs.IsAlreadyExists(err) {
		t.Errorf("second add: %v, want already exists", err)
	}
	got, err := Lookup(root, vol+"/")
	if err != nil || got.Device != "/dev/sdb" || got.FSType != "ext4" || len(got.Options) != 1 {
		t.Fatalf("lookup: %+v %v", got, err)
	}
	if _, err := SandboxOf(root, vol); !errdefs.IsNotFound(err) {
		t.Errorf("sandbox before use: %v, want not found", err)
	}
	if err := SetSandbox(root, vol, "sb1"); err != nil {
		t.Fatal(err)
	}
	if id, err := SandboxOf(root, vol); err != nil || id != "sb1" {
		t.Errorf("sandbox: %q %v", id, err)
	}
	if err := ClearSandbox(root, vol, "sb2"); err != nil {
		t.Fatal(err)
	}
	if id, err := SandboxOf(root, vol); err != nil || id != "sb1" {
		t.Errorf("sandbox after another sandbox's clear: %q %v", id, err)
	}
	if err := ClearSandbox(root, vol, "sb1"); err != nil {
		t.Fatal(err)
	}
	if _, err := SandboxOf(root, vol); !errdefs.IsNotFound(err) {
		t.Errorf("sandbox after its clear: %v, want not found", err)
	}
	if err := SetSandbox(root, vol, "sb1"); err != nil {
		t.Fatal(err)
	}
	if err := Remove(root, vol); err != nil {
		t.Fatal(err)
	}
	if err := Remove(root, vol); !errdefs.IsNotFound(err) {
		t.Errorf("second remove: %v, want not found", err)
	}
	if _, err := SandboxOf(root, vol); !errdefs.IsNotFound(err) {
		t.Errorf("sandbox after remove: %v, want not found", err)
	}
}

func TestAddRefuses(t *testing.T) {
	root := t.TempDir()
	for _, tc := range []struct {
		name string
		vol  string
		info MountInfo
	}{
		{"relative volume path", "vol", MountInfo{Device: "/dev/sdb", FSType: "ext4"}},
		{"relative device", "/vol", MountInfo{Device: "sdb", FSType: "ext4"}},
		{"unclean device", "/vol", MountInfo{Device: "/dev/../etc/passwd", FSType: "ext4"}},
		{"no fstype", "/vol", MountInfo{Device: "/dev/sdb"}},
		{"other volume type", "/vol", MountInfo{VolumeType: "spdk", Device: "/dev/sdb", FSType: "ext4"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := Add(root, tc.vol, tc.info); err == nil {
				t.Errorf("added %+v at %q", tc.info, tc.vol)
			}
		})
	}
}
