package shim

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/containerd/api/types"
	"golang.org/x/sys/unix"

	"github.com/vessel-containers/vessel/internal/idrange"
	"github.com/vessel-containers/vessel/internal/testutil"
)

// TestMountMapped presents a root file system to a VMM on its own ids with the host
// owners kept (hypervisor.vmm_file_ids = "container"), for a bundle's plain directory,
// for a bundle directory that is an overlay mount (podman's rootfs) and for containerd's
// overlay snapshot: files appear with their on-disk owners shifted into the ids, and
// what the ids' root writes, creates and chowns to its root lands where runc's
// container would write (the directory, the overlay's upper directory) owned by host
// root; the mounts are nosuid and nodev, and unmount leaves nothing behind.
func TestMountMapped(t *testing.T) {
	testutil.RequiresRoot(t)
	ids := idrange.Range{Start: 2000000000, Size: idrange.Size}
	for _, kind := range []string{"directory", "overlay", "snapshot"} {
		t.Run(kind, func(t *testing.T) {
			bundle := t.TempDir()
			rootfs := filepath.Join(bundle, "rootfs")
			image, written := rootfs, rootfs
			if kind != "directory" {
				image, written = filepath.Join(bundle, "layer"), filepath.Join(bundle, "snap", "upper")
			}
			if err := os.MkdirAll(filepath.Join(image, "etc"), 0o755); err != nil {
				t.Fatal(err)
			}
			passwd := filepath.Join(image, "etc", "passwd")
			if err := os.WriteFile(passwd, []byte("root:x:0:0::/root:/bin/sh\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(passwd, 0, 42); err != nil {
				t.Fatal(err)
			}
			c := &container{id: "c1", bundle: bundle, rootfs: rootfs}
			upper, work := filepath.Join(bundle, "snap", "upper"), filepath.Join(bundle, "snap", "work")
			if kind != "directory" {
				for _, d := range []string{rootfs, upper, work} {
					if err := os.MkdirAll(d, 0o755); err != nil {
						t.Fatal(err)
					}
				}
			}
			opts := []string{"index=off", "lowerdir=" + image, "upperdir=" + upper, "workdir=" + work}
			shared := rootfs
			switch kind {
			case "overlay":
				if err := unix.Mount("overlay", rootfs, "overlay", 0, strings.Join(opts, ",")); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = unix.Unmount(rootfs, unix.MNT_DETACH) })
				fallthrough
			case "directory":
				var err error
				if shared, err = c.mountDirMapped(rootfs, ids); err != nil {
					t.Fatal(err)
				}
			case "snapshot":
				if err := c.mountRootfsMapped([]*types.Mount{{Type: "overlay", Source: "overlay", Options: opts}}, ids); err != nil {
					t.Fatal(err)
				}
			}
			t.Cleanup(func() { c.unmountRootfs(context.Background()) })

			var st unix.Stat_t
			if err := unix.Stat(filepath.Join(shared, "etc", "passwd"), &st); err != nil {
				t.Fatal(err)
			}
			if st.Uid != ids.HostID(0) || st.Gid != ids.HostID(42) {
				t.Errorf("etc/passwd through the idmapped rootfs: owner %d:%d, want %d:%d", st.Uid, st.Gid, ids.HostID(0), ids.HostID(42))
			}
			// What the VMM's root does: write an image file, make a root-owned setuid file.
			err := asIDsRoot(ids, func() error {
				if err := os.WriteFile(filepath.Join(shared, "etc", "passwd"), []byte("changed\n"), 0o644); err != nil {
					return err
				}
				suid := filepath.Join(shared, "suid")
				if err := os.WriteFile(suid, []byte("#!/bin/sh\n"), 0o755); err != nil {
					return err
				}
				return unix.Chmod(suid, 0o4755)
			})
			if err != nil {
				t.Fatal(err)
			}
			if b, _ := os.ReadFile(filepath.Join(written, "etc", "passwd")); string(b) != "changed\n" {
				t.Errorf("%s/etc/passwd: %q, want the write", written, b)
			}
			if err := unix.Stat(filepath.Join(written, "suid"), &st); err != nil || st.Uid != 0 || st.Gid != 0 || st.Mode&0o7777 != 0o4755 {
				t.Errorf("%s/suid: owner %d:%d mode %#o (%v), want 0:0 4755 as runc's container root makes it", written, st.Uid, st.Gid, st.Mode&0o7777, err)
			}
			var fs unix.Statfs_t
			if err := unix.Statfs(shared, &fs); err != nil {
				t.Fatal(err)
			}
			if fs.Flags&unix.ST_NOSUID == 0 || fs.Flags&unix.ST_NODEV == 0 {
				t.Errorf("idmapped rootfs mount flags %#x, want nosuid and nodev", fs.Flags)
			}

			c.unmountRootfs(context.Background())
			if _, err := os.Stat(c.idmapDir()); !os.IsNotExist(err) {
				t.Errorf("after unmount %s: %v, want it gone", c.idmapDir(), err)
			}
			if ents, _ := os.ReadDir(filepath.Dir(upper)); kind != "directory" && len(ents) != 2 {
				t.Errorf("after unmount %s holds %d entries, want only upper and work", filepath.Dir(upper), len(ents))
			}
			if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil && (containsPath(string(b), c.idmapDir()) || kind == "snapshot" && containsPath(string(b), rootfs)) {
				t.Errorf("a mount under %s is left", bundle)
			}
		})
	}
}
