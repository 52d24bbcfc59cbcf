//go:build linux

package storage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
)

func TestRel(t *testing.T) {
	root := "/run/vessel"
	for _, tc := range []struct {
		name, in, want string
		ok             bool
	}{
		{"under root", root + "/shared", "shared", true},
		{"nested and unclean", root + "/a//b/../c", "a/c", true},
		{"root itself", root, "", false},
		{"dotdot out", root + "/../x", "", false},
		{"sibling prefix", root + "x/y", "", false},
		{"relative", "run/vessel/x", "", false},
		{"elsewhere", "/etc", "", false},
		{"empty", "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Rel(root, tc.in)
			if tc.ok != (err == nil) {
				t.Fatalf("Rel(%q) error = %v, want ok=%v", tc.in, err, tc.ok)
			}
			if err != nil && !errdefs.IsInvalidArgument(err) {
				t.Fatalf("error %v is not invalid argument", err)
			}
			if got != tc.want {
				t.Fatalf("Rel(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestOpenDir(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := OpenDir(root, "a/b/c", 0o750, true)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.Readlink(FdPath(f))
	f.Close()
	if err != nil || got != filepath.Join(root, "a/b/c") {
		t.Fatalf("opened %q (%v), want %s/a/b/c", got, err, root)
	}
	if _, err := OpenDir(root, "missing", 0, false); !errdefs.IsNotFound(err) {
		t.Fatalf("missing without create: %v, want not found", err)
	}
	for _, rel := range []string{"link", "link/x", "a/../link/x"} {
		if _, err := OpenDir(root, rel, 0o755, true); !errdefs.IsInvalidArgument(err) {
			t.Errorf("OpenDir(%q) = %v, want a refused symlink", rel, err)
		}
	}
	if _, err := OpenDir(root, "file/x", 0o755, true); !errdefs.IsInvalidArgument(err) {
		t.Errorf("through a file: %v, want invalid argument", err)
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Fatalf("OpenDir created %v outside the root", entries)
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
	// The manager mounts onto /proc/self/fd/N and unmounts /proc/self/fd/N/name: record
	// the directories those name.
	m.mount = func(source, target, fstype string, flags uintptr, data string) error {
		dir, err := os.Readlink(target)
		if err != nil {
			t.Errorf("mount target %q is not an open directory: %v", target, err)
		}
		mounts = append(mounts, call{source, dir, fstype, flags, data})
		return nil
	}
	m.unmount = func(target string, flags int) error {
		if flags&unix.UMOUNT_NOFOLLOW == 0 {
			t.Errorf("unmount %s without UMOUNT_NOFOLLOW", target)
		}
		parent, err := os.Readlink(filepath.Dir(target))
		if err != nil {
			t.Errorf("unmount target %q is not under an open directory: %v", target, err)
		}
		unmounts = append(unmounts, filepath.Join(parent, filepath.Base(target)))
		return nil
	}
	// Disks: the PCI path "1e/0N" is /dev/vd<a+N-1>; "1e/1f" never appears.
	m.findBlock = func(ctx context.Context, driver, pciPath string) (string, error) {
		if driver == "scsi" {
			return "/dev/sda", nil
		}
		if pciPath == "1e/1f" {
			return "", context.DeadlineExceeded
		}
		var n int
		if _, err := fmt.Sscanf(pciPath, "1e/%02x", &n); err != nil || n < 1 {
			return "", fmt.Errorf("%w: pci path %q", errdefs.ErrInvalidArgument, pciPath)
		}
		return "/dev/vd" + string(rune('a'+n-1)), nil
	}
	m.filesystems = func() ([]byte, error) {
		return []byte("nodev\tsysfs\nnodev\ttmpfs\n\text4\n\text2\nnodev\t9p\n"), nil
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

// TestBlkStorage mounts a disk twice at one mount point (one mount, two references) and
// unmounts it after its last user.
func TestBlkStorage(t *testing.T) {
	ctx := context.Background()
	m, mounts, unmounts := newTestManager(t)
	st := &agentv1.Storage{Driver: "blk", Source: "1e/02", Fstype: "ext4", Options: []string{"ro", "errors=remount-ro"}, MountPoint: m.root + "/disks/d1"}
	for i := 0; i < 2; i++ {
		mp, err := m.Mount(ctx, st)
		if err != nil || mp != m.root+"/disks/d1" {
			t.Fatalf("mount %d: %q, %v", i, mp, err)
		}
	}
	want := call{"/dev/vdb", m.root + "/disks/d1", "ext4", unix.MS_RDONLY, "errors=remount-ro"}
	if len(*mounts) != 1 || (*mounts)[0] != want {
		t.Fatalf("mounts: got %+v, want one %+v", *mounts, want)
	}
	if err := m.Unmount(ctx, m.root+"/disks/d1"); err != nil || len(*unmounts) != 0 {
		t.Fatalf("first unmount: %v, unmounts %v (want none: one user left)", err, *unmounts)
	}
	if err := m.Unmount(ctx, m.root+"/disks/d1"); err != nil || len(*unmounts) != 1 {
		t.Fatalf("last unmount: %v, unmounts %v", err, *unmounts)
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
		{"scsi nodev fs", &agentv1.Storage{Driver: "scsi", Source: "1:0", Fstype: "tmpfs", MountPoint: root + "/a"}, errdefs.IsNotImplemented},
		{"blk without fstype", &agentv1.Storage{Driver: "blk", Source: "1e/01", MountPoint: root + "/a"}, errdefs.IsInvalidArgument},
		{"blk without source", &agentv1.Storage{Driver: "blk", Fstype: "ext4", MountPoint: root + "/a"}, errdefs.IsInvalidArgument},
		{"blk fs the guest lacks", &agentv1.Storage{Driver: "blk", Source: "1e/01", Fstype: "xfs", MountPoint: root + "/a"}, errdefs.IsNotImplemented},
		{"blk nodev fs", &agentv1.Storage{Driver: "blk", Source: "1e/01", Fstype: "tmpfs", MountPoint: root + "/a"}, errdefs.IsNotImplemented},
		{"blk bad option", &agentv1.Storage{Driver: "blk", Source: "1e/01", Fstype: "ext4", Options: []string{"bind"}, MountPoint: root + "/a"}, errdefs.IsInvalidArgument},
		{"blk disk never comes", &agentv1.Storage{Driver: "blk", Source: "1e/1f", Fstype: "ext4", MountPoint: root + "/a"}, func(err error) bool { return errors.Is(err, context.DeadlineExceeded) }},
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

// TestManagerSymlinkedMountPoint plants what a container that can write the shared tree
// would: a symlink at a mount point and in a parent of one, pointing out of the root.
// Nothing is mounted or created through them; and a mount point swapped for a symlink after
// the mount is unmounted through its opened parent without following the link.
func TestManagerSymlinkedMountPoint(t *testing.T) {
	ctx := context.Background()
	m, mounts, unmounts := newTestManager(t)
	root := m.root
	outside := t.TempDir()
	if err := os.Symlink(outside, root+"/evil"); err != nil {
		t.Fatal(err)
	}
	for _, mp := range []string{root + "/evil", root + "/evil/shm"} {
		_, err := m.Mount(ctx, &agentv1.Storage{Driver: "ephemeral", MountPoint: mp})
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "is a symlink") {
			t.Errorf("mount on %s: %v, want a refused symlink", mp, err)
		}
		_, err = m.Mount(ctx, &agentv1.Storage{Driver: "local", Options: []string{"mode=0777"}, MountPoint: mp + "/local"})
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("local storage under %s: %v, want a refused symlink", mp, err)
		}
	}
	if len(*mounts) != 0 {
		t.Fatalf("mounted through a symlink: %+v", *mounts)
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Fatalf("created %v outside the root", entries)
	}
	fi, _ := os.Stat(outside)
	if fi.Mode().Perm() == 0o777 {
		t.Fatal("chmod went through the symlink")
	}

	// Mounted, then the parent is swapped for a symlink before unmount.
	if _, err := m.Mount(ctx, &agentv1.Storage{Driver: "ephemeral", MountPoint: root + "/c1/shm"}); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(root+"/c1", root+"/c1.moved"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, root+"/c1"); err != nil {
		t.Fatal(err)
	}
	if err := m.Unmount(ctx, root+"/c1/shm"); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("unmount through a swapped-in symlink: %v, want refused", err)
	}
	if len(*unmounts) != 0 {
		t.Fatalf("unmounted through a symlink: %v", *unmounts)
	}
}

// TestManagerDriverOptions: each driver takes only its own options, and the error names the
// driver and the option.
func TestManagerDriverOptions(t *testing.T) {
	ctx := context.Background()
	m, mounts, _ := newTestManager(t)
	root := m.root
	for _, tc := range []struct {
		driver string
		opts   []string
		bad    string // the option the error must name; "" when the options are fine
	}{
		{"9p", []string{"trans=virtio", "version=9p2000.L", "msize=524288", "cache=mmap", "nosuid"}, ""},
		{"9p", []string{"bind"}, "bind"},
		{"9p", []string{"rbind", "ro"}, "rbind"},
		{"9p", []string{"trans=fd", "rfdno=3", "wfdno=4"}, "trans=fd"},
		{"9p", []string{"size=1g"}, "size=1g"},
		{"virtiofs", []string{"dax=always", "ro"}, ""},
		{"virtiofs", []string{"msize=8192"}, "msize=8192"},
		{"virtiofs", []string{"bind"}, "bind"},
		{"ephemeral", []string{"nosuid", "nodev", "size=65536k", "mode=1777"}, ""},
		{"ephemeral", []string{"trans=virtio"}, "trans=virtio"},
		{"ephemeral", []string{"rbind"}, "rbind"},
		{"local", []string{"mode=0750"}, ""},
		{"local", []string{"bind"}, "bind"},
		{"local", []string{"size=1m"}, "size=1m"},
	} {
		t.Run(tc.driver+" "+strings.Join(tc.opts, ","), func(t *testing.T) {
			s := &agentv1.Storage{Driver: tc.driver, Source: "tag", Options: tc.opts, MountPoint: root + "/" + tc.driver}
			_, err := m.Mount(ctx, s)
			if tc.bad == "" {
				if err != nil {
					t.Fatalf("valid options refused: %v", err)
				}
				if err := m.Unmount(ctx, root+"/"+tc.driver); err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tc.driver+" storage") || !strings.Contains(err.Error(), `"`+tc.bad+`"`) {
				t.Fatalf("err = %v, want invalid argument naming %s and %q", err, tc.driver, tc.bad)
			}
		})
	}
	for _, c := range *mounts {
		if c.flags&unix.MS_BIND != 0 {
			t.Fatalf("a bind mount was made: %+v", c)
		}
	}
}

// TestOverlayStorage builds an overlay over directories under the root: upperdir and
// workdir are made, every directory is passed to the kernel as the one that was opened, and
// a lower directory that is a symlink or outside the root is refused before any mount.
func TestOverlayStorage(t *testing.T) {
	ctx := context.Background()
	m, mounts, unmounts := newTestManager(t)
	root := m.root
	for _, d := range []string{"disks/d0", "disks/d1", "disks/d2"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	st := &agentv1.Storage{
		Driver: "overlay", Fstype: "overlay", Source: "overlay",
		Options: []string{
			"lowerdir=" + root + "/disks/d1:" + root + "/disks/d2",
			"upperdir=" + root + "/disks/d0/upper", "workdir=" + root + "/disks/d0/work", "index=off",
		},
		MountPoint: root + "/rootfs/c1",
	}
	if _, err := m.Mount(ctx, st); err != nil {
		t.Fatal(err)
	}
	if len(*mounts) != 1 {
		t.Fatalf("mounts: %+v, want one", *mounts)
	}
	got := (*mounts)[0]
	if got.source != "overlay" || got.fstype != "overlay" || got.target != root+"/rootfs/c1" {
		t.Errorf("mount: %+v", got)
	}
	// The directories were open during the mount; what each fd named is gone now, so check
	// the shape and that upper and work were made.
	opts := strings.Split(got.data, ",")
	if len(opts) != 4 || !strings.HasPrefix(opts[0], "lowerdir=/proc/self/fd/") || strings.Count(opts[0], "/proc/self/fd/") != 2 ||
		!strings.HasPrefix(opts[1], "upperdir=/proc/self/fd/") || !strings.HasPrefix(opts[2], "workdir=/proc/self/fd/") || opts[3] != "index=off" {
		t.Errorf("overlay data %q: want lowerdir, upperdir and workdir as opened directories, then index=off", got.data)
	}
	for _, d := range []string{"disks/d0/upper", "disks/d0/work"} {
		if fi, err := os.Stat(filepath.Join(root, d)); err != nil || !fi.IsDir() {
			t.Errorf("%s not made: %v", d, err)
		}
	}
	if err := m.Unmount(ctx, root+"/rootfs/c1"); err != nil || len(*unmounts) != 1 {
		t.Fatalf("unmount: %v, unmounts %v", err, *unmounts)
	}

	if err := os.Symlink("/etc", filepath.Join(root, "disks/link")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		opts []string
	}{
		{"symlinked lower", []string{"lowerdir=" + root + "/disks/link"}},
		{"lower outside the root", []string{"lowerdir=/etc"}},
		{"missing lower", []string{"lowerdir=" + root + "/disks/none"}},
		{"upper without work", []string{"lowerdir=" + root + "/disks/d1", "upperdir=" + root + "/disks/d0/upper"}},
		{"no lower", []string{"upperdir=" + root + "/disks/d0/upper", "workdir=" + root + "/disks/d0/work"}},
		{"unknown option", []string{"lowerdir=" + root + "/disks/d1", "default_permissions"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &agentv1.Storage{Driver: "overlay", Options: tc.opts, MountPoint: root + "/rootfs/bad"}
			if _, err := m.Mount(ctx, s); err == nil {
				t.Fatalf("mounted an overlay with %q", tc.opts)
			}
			if len(*mounts) != 1 {
				t.Fatalf("mounted: %+v", (*mounts)[1:])
			}
		})
	}
}
