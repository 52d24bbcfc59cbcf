package cli_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
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
// runc takes it) through the vessel CLI with hypervisor.vmm_id_range and the strict
// vmm_file_ids = "sandbox", and attacks from
// guest root. The container sees the image's files owned by 0 and can write them; on
// the host the bundle's rootfs is untouched, what guest root made (the rewritten image
// file, setuid-root copies, a file given to root) is in the container's upper directory
// owned by the sandbox's unprivileged ids, no device node exists, and after delete the
// upper directory, every mount and the id lease are gone.
func TestUnprivilegedVMMBundle(t *testing.T) {
	h := newHarnessConfig(t, "vmm_id_range = \""+jailPool+"\"\nvmm_file_ids = \"sandbox\"\n")
	if err := os.Chmod(h.root, 0o711); err != nil { // as the default state root is made
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

// parityProbe is guest root in a container of TestUnprivilegedVMMBundleParity: on its
// first run it rewrites an image file, makes a setuid-root copy of busybox and a marker
// in its rootfs, appends to the volume's root-owned file, tries device nodes and sets a
// file capability (the volume's setfcap); on a later run it reports the marker it finds.
const parityProbe = `exec 2>>/vol/probe-log
if [ -e /marker ]; then cat /marker >/vol/seen; touch /vol/done2; exec sleep 1000; fi
echo guest-was-here >>/etc/passwd &&
cp /bin/busybox /suid && chown 0:0 /suid && chmod 4755 /suid &&
echo first-run >/marker &&
echo guest-was-here >>/vol/hostroot &&
{ mknod /null c 1 3; mknod /vol/null c 1 3; true; } 2>/vol/mknod &&
cp /bin/busybox /vol/capbin && { /vol/setfcap /vol/capbin; echo "rc=$?"; } >/vol/setfcap-out 2>&1 &&
touch /vol/done && exec sleep 1000`

// TestUnprivilegedVMMBundleParity runs a container from an OCI bundle through the vessel
// CLI with the unprivileged VMM and vmm_file_ids = "container": runc's semantics with a
// jailed VMM. Container root writes the volume's root-owned file; what it writes in its
// rootfs lands in the bundle's rootfs directory with the owners runc would give it (a
// setuid-root copy is owned by host root, as runc's container root makes it) and is
// still there when the container is deleted and created again. Device nodes and file
// capabilities stay impossible; QEMU is jailed as in the strict mode.
func TestUnprivilegedVMMBundleParity(t *testing.T) {
	h := newHarnessConfig(t, "vmm_id_range = \""+jailPool+"\"\nvmm_file_ids = \"container\"\n")
	if err := os.Chmod(h.root, 0o711); err != nil { // as the default state root is made
		t.Fatal(err)
	}
	vol := t.TempDir()
	if err := os.Chmod(vol, 0o755); err != nil { // root's: runc's container root writes it
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(vol, "hostroot"), []byte("host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	setfcap, err := os.ReadFile(testutil.BuildStatic(t, "./internal/testutil/cmd/setfcap"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(vol, "setfcap"), setfcap, 0o755); err != nil {
		t.Fatal(err)
	}
	b := h.bundle([]string{"sh", "-c", parityProbe}, func(s *specs.Spec) {
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/vol", Type: "bind", Source: vol, Options: []string{"rbind", "rw"}})
		all := []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_MKNOD", "CAP_SETUID", "CAP_SETGID", "CAP_SETFCAP"}
		s.Process.Capabilities = &specs.LinuxCapabilities{Bounding: all, Effective: all, Permitted: all}
	})
	rootfs := filepath.Join(b, "rootfs")
	h.ok("run", "--detach", "--bundle", b, "p1")
	testutil.WaitFor(t, "the container's probe to finish", func() bool {
		_, err := os.Stat(filepath.Join(vol, "done"))
		return err == nil
	})
	if log, _ := os.ReadFile(filepath.Join(vol, "probe-log")); len(log) > 0 {
		t.Logf("probe stderr: %q", log)
	}
	if got, _ := os.ReadFile(filepath.Join(rootfs, "etc", "passwd")); !strings.Contains(string(got), "guest-was-here") {
		t.Errorf("the bundle's rootfs etc/passwd on the host lacks the container's write: %q", got)
	}
	if got, _ := os.ReadFile(filepath.Join(vol, "hostroot")); !strings.Contains(string(got), "guest-was-here") {
		t.Errorf("container root did not write the volume's root-owned file: %q", got)
	}
	for _, p := range []string{filepath.Join(rootfs, "suid"), filepath.Join(rootfs, "etc", "passwd"), filepath.Join(vol, "hostroot")} {
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		t.Logf("%s on the host: uid %d gid %d mode %#o", p, st.Uid, st.Gid, st.Mode)
		if st.Uid != 0 || st.Gid != 0 {
			t.Errorf("%s on the host: uid %d gid %d, want 0 as runc gives it", p, st.Uid, st.Gid)
		}
	}
	for _, p := range []string{filepath.Join(rootfs, "null"), filepath.Join(vol, "null")} {
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err == nil && (st.Mode&unix.S_IFMT == unix.S_IFCHR || st.Mode&unix.S_IFMT == unix.S_IFBLK) {
			t.Errorf("guest root made a device node on the host: %s (mode %#o)", p, st.Mode)
		}
	}
	if out, _ := os.ReadFile(filepath.Join(vol, "setfcap-out")); !strings.Contains(string(out), "rc=1") {
		t.Errorf("setting a file capability in the guest: %q, want it refused", out)
	}
	if sz, err := unix.Getxattr(filepath.Join(vol, "capbin"), "security.capability", nil); !errors.Is(err, unix.ENODATA) {
		t.Errorf("the volume's capbin on the host has a security.capability (%d bytes, %v), want none", sz, err)
	}

	h.ok("delete", "--force", "p1")
	if _, err := os.Stat(filepath.Join(b, ".vessel-rootfs-p1")); !os.IsNotExist(err) {
		t.Errorf("the container's idmapped rootfs directory is left: %v", err)
	}
	if m, _ := sharefs.MountsUnder(b); len(m) > 0 {
		t.Errorf("mounts left under the bundle: %v", m)
	}
	// A new create of the same bundle sees what the first run wrote.
	h.ok("create", "--bundle", b, "p1")
	h.ok("start", "p1")
	testutil.WaitFor(t, "the second run to report", func() bool {
		_, err := os.Stat(filepath.Join(vol, "done2"))
		return err == nil
	})
	if seen, _ := os.ReadFile(filepath.Join(vol, "seen")); strings.TrimSpace(string(seen)) != "first-run" {
		t.Errorf("the second run sees /marker as %q, want the first run's \"first-run\"", seen)
	}
	h.ok("delete", "--force", "p1")
}

// TestJailedBelowClosedDir runs containers through the vessel CLI with the default jail
// and the state root, the kernel and the initrd below a mode-0700 directory (as `mktemp
// -d` makes it, and runc's bats helpers make --root), over 9p and over virtio-fs: QEMU and
// virtiofsd, on the sandbox's unprivileged ids, get their paths as clones passed by the
// runtime, so the sandbox boots and runs the container and an exec, and no directory's
// mode changed.
func TestJailedBelowClosedDir(t *testing.T) {
	g := testutil.RequiresVM(t)
	for _, tc := range []struct{ name, sharedFS string }{
		{name: "9p", sharedFS: "virtio-9p"},
		{name: "virtio-fs", sharedFS: "virtio-fs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			closed, err := os.MkdirTemp("", "vclosed")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(closed) }) // after the harness's checks
			guestDir, root := filepath.Join(closed, "guest"), filepath.Join(closed, "root")
			for _, d := range []string{guestDir, root} {
				if err := os.Mkdir(d, 0o700); err != nil {
					t.Fatal(err)
				}
			}
			guest := testutil.Guest{Kernel: filepath.Join(guestDir, "vmlinux"), Initrd: filepath.Join(guestDir, "initramfs.img")}
			for src, dst := range map[string]string{g.Kernel: guest.Kernel, g.Initrd: guest.Initrd} {
				if err := os.Link(src, dst); err != nil {
					copyFile(t, src, dst) // rootless_integration_test.go
				}
			}
			h := newHarnessGuest(t, guest, fmt.Sprintf("shared_fs = %q\n", tc.sharedFS))
			h.root = root
			modes := map[string]os.FileMode{}
			for _, p := range []string{closed, guestDir, root} {
				st, err := os.Stat(p)
				if err != nil {
					t.Fatal(err)
				}
				modes[p] = st.Mode()
			}

			b := h.bundle([]string{"sleep", "1000"}, nil)
			h.ok("run", "--detach", "--bundle", b, "closed1")
			out, err := exec.Command("pgrep", "-f", "qemu-system.*-name vessel-closed1 ").Output()
			if err != nil {
				t.Fatalf("no QEMU for the sandbox: %v", err)
			}
			pid := strings.Fields(string(out))[0]
			uidMap, err := os.ReadFile("/proc/" + pid + "/uid_map")
			if err != nil {
				t.Fatal(err)
			}
			if f := strings.Fields(string(uidMap)); len(f) != 3 || f[0] != "0" || f[1] == "0" {
				t.Errorf("QEMU's uid_map %q, want its own unprivileged ids (the jail)", uidMap)
			}
			if _, err := os.Stat("/proc/" + pid + "/root" + guest.Kernel); err != nil {
				t.Errorf("the kernel is not in QEMU's root: %v", err)
			}
			if tc.sharedFS == "virtio-fs" {
				// virtiofsd is pid 1 of its pid namespace, serving the export below root.
				out, err := exec.Command("pgrep", "-f", "virtiofsd.*source="+root+"/").Output()
				if err != nil {
					t.Fatalf("no virtiofsd for the sandbox: %v", err)
				}
				for _, fsd := range strings.Fields(string(out)) {
					fsdMap, err := os.ReadFile("/proc/" + fsd + "/uid_map")
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(fsdMap, uidMap) {
						t.Errorf("virtiofsd %s's uid_map %q, want QEMU's %q", fsd, fsdMap, uidMap)
					}
				}
			}
			if got := h.ok("exec", "closed1", "echo", "hello-from-closed"); strings.TrimSpace(got) != "hello-from-closed" {
				t.Errorf("exec printed %q, want hello-from-closed", got)
			}
			h.ok("delete", "--force", "closed1")
			for p, mode := range modes {
				if st, err := os.Stat(p); err != nil || st.Mode() != mode {
					t.Errorf("%s: mode %v (%v) after the run, want %v unchanged", p, st.Mode(), err, mode)
				}
			}
		})
	}
}
