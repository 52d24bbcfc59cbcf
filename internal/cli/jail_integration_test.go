package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/vessel-containers/vessel/internal/idrange"
	"github.com/vessel-containers/vessel/internal/sharefs"
	"github.com/vessel-containers/vessel/internal/testutil"
)

// jailPool is the id pool of the CLI's unprivileged-VMM test: far above any host user.
const jailPool = "2000000000-2000131071"

// jailProbe is guest root attacking the host through its rootfs and a volume: it
// rewrites an image file owned by root, makes setuid-root copies of busybox, gives a
// file to root and tries device nodes, then leaves a marker.
const jailProbe = `exec 2>/vol/probe-log
echo guest-was-here >>/etc/passwd &&
stat -c '%u %g' /bin/busybox >/vol/owner &&
cp /bin/busybox /suid && chown 0:0 /suid && chmod 4755 /suid &&
cp /bin/busybox /vol/suid && chown 0:0 /vol/suid && chmod 4755 /vol/suid &&
touch /rootfile && chown 0:0 /rootfile &&
{ mknod /null c 1 3; mknod /vol/null c 1 3; true; } 2>/vol/mknod &&
touch /vol/done && exec sleep 1000`

// TestUnprivilegedVMMBundle runs a container from an OCI bundle (a rootfs directory, as
// runc takes it) through the vessel CLI with hypervisor.vmm_id_range, and attacks from
// guest root. The container sees the image's files owned by 0 and can write them; on
// the host the bundle's rootfs is untouched, what guest root made (the rewritten image
// file, setuid-root copies, a file given to root) is in the container's upper directory
// owned by the sandbox's unprivileged ids, no device node exists, and after delete the
// upper directory, every mount and the id lease are gone.
func TestUnprivilegedVMMBundle(t *testing.T) {
	h := newHarnessConfig(t, "vmm_id_range = \""+jailPool+"\"\n")
	if err := os.Chmod(h.root, 0o711); err != nil { // the VMM's ids pass through it to the export
		t.Fatal(err)
	}
	pool, err := idrange.ParsePool(jailPool)
	if err != nil {
		t.Fatal(err)
	}
	vol := t.TempDir()
	if err := os.Chmod(vol, 0o777); err != nil {
		t.Fatal(err)
	}
	b := h.bundle([]string{"sh", "-c", jailProbe}, func(s *specs.Spec) {
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/vol", Type: "bind", Source: vol, Options: []string{"rbind", "rw"}})
		all := []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_MKNOD", "CAP_SETUID", "CAP_SETGID"}
		s.Process.Capabilities = &specs.LinuxCapabilities{Bounding: all, Effective: all, Permitted: all}
	})
	rootfs := filepath.Join(b, "rootfs")
	passwdBefore, err := os.ReadFile(filepath.Join(rootfs, "etc", "passwd"))
	if err != nil {
		t.Fatal(err)
	}
	h.ok("run", "--detach", "--bundle", b, "j1")
	testutil.WaitFor(t, "the container's probe to finish", func() bool {
		_, err := os.Stat(filepath.Join(vol, "done"))
		return err == nil
	})
	if owner, _ := os.ReadFile(filepath.Join(vol, "owner")); strings.TrimSpace(string(owner)) != "0 0" {
		t.Errorf("the container sees /bin/busybox owned by %q, want \"0 0\"", owner)
	}
	mknod, _ := os.ReadFile(filepath.Join(vol, "mknod"))
	t.Logf("mknod in the guest: %q", mknod)

	if got, _ := os.ReadFile(filepath.Join(rootfs, "etc", "passwd")); string(got) != string(passwdBefore) {
		t.Errorf("the bundle's rootfs etc/passwd was changed on the host: %q", got)
	}
	for _, name := range []string{"suid", "rootfile", "null"} {
		if _, err := os.Lstat(filepath.Join(rootfs, name)); !os.IsNotExist(err) {
			t.Errorf("guest root's %s appeared in the bundle's rootfs: %v", name, err)
		}
	}
	upper := filepath.Join(b, ".vessel-rootfs-j1", "upper")
	var base uint32
	for _, p := range []string{
		filepath.Join(upper, "etc", "passwd"), filepath.Join(upper, "suid"), filepath.Join(upper, "rootfile"),
		filepath.Join(vol, "suid"),
	} {
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		t.Logf("%s on the host: uid %d gid %d mode %#o", p, st.Uid, st.Gid, st.Mode)
		if base == 0 {
			base = st.Uid
		}
		if st.Uid < pool.Start || st.Uid > pool.End || st.Uid != base || st.Gid != base {
			t.Errorf("%s on the host: uid %d gid %d, want the sandbox's root, one id of the pool %s", p, st.Uid, st.Gid, jailPool)
		}
	}
	for _, p := range []string{filepath.Join(upper, "null"), filepath.Join(vol, "null")} {
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err == nil && (st.Mode&unix.S_IFMT == unix.S_IFCHR || st.Mode&unix.S_IFMT == unix.S_IFBLK) {
			t.Errorf("guest root made a device node on the host: %s (mode %#o)", p, st.Mode)
		}
	}

	h.ok("delete", "--force", "j1")
	if _, err := os.Stat(filepath.Join(b, ".vessel-rootfs-j1")); !os.IsNotExist(err) {
		t.Errorf("the container's idmapped rootfs directory is left: %v", err)
	}
	if m, _ := sharefs.MountsUnder(b); len(m) > 0 {
		t.Errorf("mounts left under the bundle: %v", m)
	}
	leases, err := os.ReadDir(idrange.DefaultLeaseDir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	for _, l := range leases {
		if data, _ := os.ReadFile(filepath.Join(idrange.DefaultLeaseDir, l.Name())); strings.Contains(string(data), h.root) {
			t.Errorf("lease %s still held after delete: %q", l.Name(), data)
		}
	}
}
