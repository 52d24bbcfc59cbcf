package shim

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vessel-containers/vessel/internal/idrange"
	"github.com/vessel-containers/vessel/internal/testutil"
)

// TestMountIDMapped presents a root file system directory to a VMM on its own ids, for
// a plain directory and for one that is itself an overlay mount (podman's rootfs): files
// appear with their on-disk owners shifted into the ids, root's writes (as the VMM makes
// them, as the ids' root) land in the upper directory owned by the ids, the directory
// itself is never written, setuid files do not run setuid through the mount, and unmount
// leaves nothing behind.
func TestMountIDMapped(t *testing.T) {
	testutil.RequiresRoot(t)
	ids := idrange.Range{Start: 2000000000, Size: idrange.Size}
	for _, kind := range []string{"directory", "overlay"} {
		t.Run(kind, func(t *testing.T) {
			bundle := t.TempDir()
			rootfs := filepath.Join(bundle, "rootfs")
			image := rootfs
			if kind == "overlay" {
				image = filepath.Join(bundle, "layer")
			}
			if err := os.MkdirAll(filepath.Join(image, "etc"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(image, "etc", "passwd"), []byte("root:x:0:0::/root:/bin/sh\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(filepath.Join(image, "etc", "passwd"), 0, 42); err != nil {
				t.Fatal(err)
			}
			if kind == "overlay" {
				for _, d := range []string{"rootfs", "upper", "work"} {
					if err := os.Mkdir(filepath.Join(bundle, d), 0o755); err != nil {
						t.Fatal(err)
					}
				}
				opts := "lowerdir=" + image + ",upperdir=" + filepath.Join(bundle, "upper") + ",workdir=" + filepath.Join(bundle, "work")
				if err := unix.Mount("overlay", rootfs, "overlay", 0, opts); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = unix.Unmount(rootfs, unix.MNT_DETACH) })
			}
			c := &container{id: "c1", bundle: bundle, rootfs: rootfs}
			shared, err := c.mountIDMapped(rootfs, ids)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.unmountRootfs(context.Background()) })

			var st unix.Stat_t
			if err := unix.Stat(filepath.Join(shared, "etc", "passwd"), &st); err != nil {
				t.Fatal(err)
			}
			if st.Uid != ids.HostID(0) || st.Gid != ids.HostID(42) {
				t.Errorf("etc/passwd through the idmapped rootfs: owner %d:%d, want %d:%d", st.Uid, st.Gid, ids.HostID(0), ids.HostID(42))
			}
			// What the VMM's root would do: write an image file, make a setuid file.
			if err := os.WriteFile(filepath.Join(shared, "etc", "passwd"), []byte("changed\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			suid := filepath.Join(shared, "suid")
			if err := os.WriteFile(suid, []byte("#!/bin/sh\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(suid, int(ids.HostID(0)), int(ids.HostID(0))); err != nil {
				t.Fatal(err)
			}
			if b, _ := os.ReadFile(filepath.Join(rootfs, "etc", "passwd")); string(b) != "root:x:0:0::/root:/bin/sh\n" {
				t.Errorf("the rootfs directory was written through the idmapped overlay: %q", b)
			}
			if _, err := os.Stat(filepath.Join(rootfs, "suid")); !os.IsNotExist(err) {
				t.Errorf("a file made through the idmapped overlay appeared in the rootfs directory: %v", err)
			}
			if err := unix.Stat(filepath.Join(c.idmapDir(), "upper", "etc", "passwd"), &st); err != nil || st.Uid != ids.HostID(0) {
				t.Errorf("the changed etc/passwd in the upper directory: uid %d (%v), want %d", st.Uid, err, ids.HostID(0))
			}
			var fs unix.Statfs_t
			if err := unix.Statfs(shared, &fs); err != nil {
				t.Fatal(err)
			}
			if fs.Flags&unix.ST_NOSUID == 0 || fs.Flags&unix.ST_NODEV == 0 {
				t.Errorf("idmapped rootfs mount flags %#x, want nosuid and nodev", fs.Flags)
			}
			if err := unix.Mknod(filepath.Join(shared, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err == nil {
				f, err := os.OpenFile(filepath.Join(shared, "null"), os.O_WRONLY, 0)
				if err == nil {
					f.Close()
					t.Error("a device node made in the idmapped rootfs can be opened")
				}
			}

			c.unmountRootfs(context.Background())
			if _, err := os.Stat(c.idmapDir()); !os.IsNotExist(err) {
				t.Errorf("after unmount %s: %v, want it gone", c.idmapDir(), err)
			}
			if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil && containsPath(string(b), c.idmapDir()) {
				t.Errorf("a mount under %s is left", c.idmapDir())
			}
		})
	}
}

func containsPath(mountinfo, dir string) bool {
	for _, l := range strings.Split(mountinfo, "\n") {
		if f := strings.Fields(l); len(f) > 4 && (f[4] == dir || len(f[4]) > len(dir) && f[4][:len(dir)+1] == dir+"/") {
			return true
		}
	}
	return false
}
