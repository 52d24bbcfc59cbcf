//go:build linux

package storage

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
)

func TestConfine(t *testing.T) {
	root := t.TempDir()
	if err := os.Symlink("/etc", filepath.Join(root, "escape")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, in, want string
		ok             bool
	}{
		{"under root", root + "/shared", root + "/shared", true},
		{"nested and unclean", root + "/a//b/../c", root + "/a/c", true},
		{"symlink resolved inside root", root + "/escape/passwd", root + "/etc/passwd", true},
		{"root itself", root, "", false},
		{"dotdot out", root + "/../x", "", false},
		{"sibling prefix", root + "x/y", "", false},
		{"relative", "run/vessel/x", "", false},
		{"elsewhere", "/etc", "", false},
		{"empty", "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Confine(root, tc.in)
			if tc.ok != (err == nil) {
				t.Fatalf("Confine(%q) error = %v, want ok=%v", tc.in, err, tc.ok)
			}
			if err != nil && !errdefs.IsInvalidArgument(err) {
				t.Fatalf("error %v is not invalid argument", err)
			}
			if got != tc.want {
				t.Fatalf("Confine(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestParseOptions(t *testing.T) {
	for _, tc := range []struct {
		name  string
		in    []string
		flags uintptr
		data  string
	}{
		{"9p", []string{"trans=virtio", "version=9p2000.L", "msize=524288", "cache=mmap"}, 0, "trans=virtio,version=9p2000.L,msize=524288,cache=mmap"},
		{"flags and data", []string{"nosuid", "nodev", "noexec", "size=64m", "mode=1777"}, 0x2 | 0x4 | 0x8, "size=64m,mode=1777"},
		{"ro then rw", []string{"ro", "rw"}, 0, ""},
		{"blank words", []string{" ", "", "ro"}, 0x1, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			flags, data := ParseOptions(tc.in)
			if flags != tc.flags || data != tc.data {
				t.Fatalf("got %#x %q, want %#x %q", flags, data, tc.flags, tc.data)
			}
		})
	}
}

type call struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
}

func newTestManager(t *testing.T) (*Manager, *[]call, *[]string) {
	t.Helper()
	m := NewManager(t.TempDir())
	var mounts []call
	var unmounts []string
	m.mount = func(source, target, fstype string, flags uintptr, data string) error {
		mounts = append(mounts, call{source, target, fstype, flags, data})
		return nil
	}
	m.unmount = func(target string, _ int) error {
		unmounts = append(unmounts, target)
		return nil
	}
	return m, &mounts, &unmounts
}

func TestManagerDrivers(t *testing.T) {
	ctx := context.Background()
	m, mounts, unmounts := newTestManager(t)
	root := m.root

	shared := &agentv1.Storage{
		Driver: "9p", Source: "vessel-shared", Fstype: "9p",
		Options:    []string{"version=9p2000.L", "msize=524288", "cache=mmap"},
		MountPoint: root + "/shared",
	}
	mp, err := m.Mount(ctx, shared)
	if err != nil {
		t.Fatal(err)
	}
	if mp != root+"/shared" {
		t.Fatalf("mount point = %q", mp)
	}
	want := call{"vessel-shared", root + "/shared", "9p", 0, "version=9p2000.L,msize=524288,cache=mmap,trans=virtio"}
	if len(*mounts) != 1 || (*mounts)[0] != want {
		t.Fatalf("mounts = %+v, want %+v", *mounts, want)
	}
	// Same storage again: reference counted, not mounted twice.
	if _, err := m.Mount(ctx, shared); err != nil {
		t.Fatal(err)
	}
	if len(*mounts) != 1 {
		t.Fatalf("mounted twice: %+v", *mounts)
	}
	// A different storage on the same mount point is refused.
	other := &agentv1.Storage{Driver: "virtiofs", Source: "x", MountPoint: root + "/shared"}
	if _, err := m.Mount(ctx, other); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("different storage on same point: %v, want already exists", err)
	}

	shm := &agentv1.Storage{Driver: "ephemeral", Fstype: "tmpfs", Options: []string{"nosuid", "nodev", "size=65536k"}, MountPoint: root + "/sandbox/shm"}
	if _, err := m.Mount(ctx, shm); err != nil {
		t.Fatal(err)
	}
	if got := (*mounts)[1]; got.fstype != "tmpfs" || got.source != "tmpfs" || got.data != "size=65536k" || got.flags != 0x2|0x4 {
		t.Fatalf("tmpfs mount = %+v", got)
	}

	local := &agentv1.Storage{Driver: "local", Options: []string{"mode=0750"}, MountPoint: root + "/local/vol"}
	if _, err := m.Mount(ctx, local); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(root + "/local/vol")
	if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o750 {
		t.Fatalf("local dir: %v %v", fi, err)
	}
	if len(*mounts) != 2 {
		t.Fatalf("local storage mounted something: %+v", *mounts)
	}

	// Unmount: the 9p share has two references.
	if err := m.Unmount(ctx, root+"/shared"); err != nil || len(*unmounts) != 0 {
		t.Fatalf("first unmount: %v %v", err, *unmounts)
	}
	for _, p := range []string{root + "/shared", root + "/sandbox/shm", root + "/local/vol"} {
		if err := m.Unmount(ctx, p); err != nil {
			t.Fatalf("unmount %s: %v", p, err)
		}
	}
	if got := *unmounts; len(got) != 2 || got[0] != root+"/shared" || got[1] != root+"/sandbox/shm" {
		t.Fatalf("unmounts = %v", got)
	}
	if err := m.Unmount(ctx, root+"/shared"); !errdefs.IsNotFound(err) {
		t.Fatalf("unmount unknown: %v", err)
	}
	if got := m.Mounted(); len(got) != 0 {
		t.Fatalf("still mounted: %v", got)
	}
}

func TestManagerRefuses(t *testing.T) {
	ctx := context.Background()
	m, mounts, _ := newTestManager(t)
	root := m.root
	for _, tc := range []struct {
		name  string
		s     *agentv1.Storage
		check func(error) bool
	}{
		{"outside root", &agentv1.Storage{Driver: "9p", Source: "t", MountPoint: "/etc"}, errdefs.IsInvalidArgument},
		{"no tag", &agentv1.Storage{Driver: "9p", MountPoint: root + "/a"}, errdefs.IsInvalidArgument},
		{"wrong fstype", &agentv1.Storage{Driver: "9p", Source: "t", Fstype: "ext4", MountPoint: root + "/a"}, errdefs.IsInvalidArgument},
		{"unknown driver", &agentv1.Storage{Driver: "nfs", MountPoint: root + "/a"}, errdefs.IsInvalidArgument},
		{"no driver", &agentv1.Storage{MountPoint: root + "/a"}, errdefs.IsInvalidArgument},
		{"block", &agentv1.Storage{Driver: "blk", Source: "0000:00:05.0", MountPoint: root + "/a"}, errdefs.IsNotImplemented},
		{"bad mode", &agentv1.Storage{Driver: "local", Options: []string{"mode=rwx"}, MountPoint: root + "/a"}, errdefs.IsInvalidArgument},
		{"nil", nil, errdefs.IsInvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := m.Mount(ctx, tc.s)
			if !tc.check(err) {
				t.Fatalf("err = %v", err)
			}
		})
	}
	if len(*mounts) != 0 {
		t.Fatalf("refused storages were mounted: %+v", *mounts)
	}
}
