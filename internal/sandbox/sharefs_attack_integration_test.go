package sandbox

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/vessel-containers/vessel/internal/bundle"
	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/oci"
	"github.com/vessel-containers/vessel/internal/sharefs"
	"github.com/vessel-containers/vessel/internal/testutil"
)

// These tests attack the host from guest root: a privileged container without its own pid
// namespace reaches the agent's mount of the export through /proc/1/root (a guest kernel
// exploit gets the same), and tries to make the host mount or write outside what the
// container was given.

// guestExport is the export as guest root outside any container reaches it.
const guestExport = "/proc/1/root" + sharefs.GuestMountPoint

var allCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
	"CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
	"CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
	"CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
	"CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
	"CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
	"CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
}

// privilegedNoPidNS makes the container privileged and keeps it in the guest's pid
// namespace, as `docker run --privileged --pid=host` would.
func privilegedNoPidNS(s *specs.Spec) {
	ns := s.Linux.Namespaces[:0]
	for _, n := range s.Linux.Namespaces {
		if n.Type != specs.PIDNamespace {
			ns = append(ns, n)
		}
	}
	s.Linux.Namespaces = ns
	s.Process.Capabilities = &specs.LinuxCapabilities{Bounding: allCaps, Effective: allCaps, Permitted: allCaps}
	s.Process.NoNewPrivileges = false
	s.Linux.Seccomp = nil
	s.Linux.MaskedPaths, s.Linux.ReadonlyPaths = nil, nil
}

// attack runs script as guest root in a privileged container (id) and returns its output.
// It checks that the attacker did reach the export, so a test cannot pass because the
// attack never ran.
func (e *env) attack(id, script string) string {
	e.t.Helper()
	full := fmt.Sprintf("S=%s\nls $S/containers >/dev/null && echo reached-export\n%s", guestExport, script)
	c := e.container(id, []string{"sh", "-c", full}, privilegedNoPidNS)
	code, out, errs := e.run(c, nil)
	e.t.Logf("attacker %s: exit %d\nstdout:\n%s\nstderr:\n%s", id, code, out, errs)
	if !strings.Contains(out, "reached-export") {
		e.t.Fatalf("the attacker did not reach the export (exit %d): %s %s", code, out, errs)
	}
	if err := e.sb.DeleteContainer(context.Background(), id); err != nil {
		e.t.Fatal(err)
	}
	return out
}

// hostDir is a host directory an attacker aims at, with a file and a tmpfs mounted in it.
type hostDir struct {
	path, mount string
}

func newHostDir(t *testing.T) hostDir {
	t.Helper()
	h := hostDir{path: t.TempDir()}
	if err := os.WriteFile(filepath.Join(h.path, "keep"), []byte("host"), 0o644); err != nil {
		t.Fatal(err)
	}
	h.mount = mountTmpfs(t, h.path, "b")
	if err := os.WriteFile(filepath.Join(h.mount, "keep"), []byte("host mount"), 0o644); err != nil {
		t.Fatal(err)
	}
	return h
}

// assertUntouched checks that nothing was created, written or mounted in the directory.
func (h hostDir) assertUntouched(t *testing.T) {
	t.Helper()
	entries, err := os.ReadDir(h.path)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, ",") != "b,keep" {
		t.Errorf("host directory %s now holds %v, want only b and keep", h.path, names)
	}
	for p, want := range map[string]string{filepath.Join(h.path, "keep"): "host", filepath.Join(h.mount, "keep"): "host mount"} {
		if got, err := os.ReadFile(p); err != nil || string(got) != want {
			t.Errorf("%s: got %q %v, want %q", p, got, err, want)
		}
	}
	if m, _ := sharefs.MountsUnder(h.path); len(m) != 1 || m[0] != h.mount {
		t.Errorf("mounts under the host directory: %v, want only its own tmpfs on %s", m, h.mount)
	}
}

// mountTmpfs mounts a tmpfs on dir/name, unmounted at cleanup.
func mountTmpfs(t *testing.T, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", p, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(p, 0); err != nil {
			t.Errorf("unmount test tmpfs %s: %v", p, err)
		}
	})
	return p
}

// assertMountsOnlyIn checks that every mount under the sandbox root is in the view of the
// export, and that no mount is made where the share's host-only tree is.
func (e *env) assertMountsOnlyInView() {
	e.t.Helper()
	view := filepath.Join(e.sb.share.Dir(), "containers")
	m, err := sharefs.MountsUnder(e.root)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, p := range m {
		if p != view && !strings.HasPrefix(p, view+"/") {
			e.t.Errorf("mount on %s, outside the export's view %s", p, view)
		}
	}
}

func volume(dest, src string, options ...string) specs.Mount {
	return specs.Mount{Destination: dest, Type: "bind", Source: src, Options: options}
}

// Guest root plants the next container's name in the export as a link to a host directory.
func TestAttackPlantNextContainer(t *testing.T) {
	e := newEnv(t)
	target := newHostDir(t)
	out := e.attack("attacker", fmt.Sprintf(`
ln -s %[1]s $S/victim && echo planted-export-root
ln -s %[1]s $S/containers/victim && echo planted-view
mkdir $S/containers/victim && echo mkdir-view
mv $S/containers $S/moved && echo moved-view
rmdir $S/containers && echo removed-view
true`, target.path))
	if !strings.Contains(out, "planted-export-root") {
		t.Errorf("guest root could not write the export root; the attack is not what this test means")
	}
	for _, done := range []string{"planted-view", "mkdir-view", "moved-view", "removed-view"} {
		if strings.Contains(out, done) {
			t.Errorf("guest root succeeded: %s", done)
		}
	}
	vol := t.TempDir()
	c := e.container("victim", []string{"sh", "-c", "echo ok > /vol/written && cat /vol/written"}, func(s *specs.Spec) {
		s.Mounts = append(s.Mounts, volume("/vol", vol, "rbind", "rw"))
	})
	target.assertUntouched(t)
	e.assertMountsOnlyInView()
	if code, got, errs := e.run(c, nil); code != 0 || got != "ok\n" {
		t.Errorf("victim: exit %d %q %q, want it to run normally", code, got, errs)
	}
	if b, err := os.ReadFile(filepath.Join(vol, "written")); err != nil || string(b) != "ok\n" {
		t.Errorf("victim's volume on the host: %q %v", b, err)
	}
	if err := e.sb.DeleteContainer(context.Background(), "victim"); err != nil {
		t.Fatal(err)
	}
	target.assertUntouched(t)
	// newEnv's cleanup deletes the sandbox and checks that no mount is left under its root.
}

// Guest root swaps an existing container's directory (and, inside a volume, a directory
// holding a submount) for links to a host directory before the container is deleted.
func TestAttackSwapBeforeDelete(t *testing.T) {
	e := newEnv(t)
	target := newHostDir(t)
	vol := t.TempDir()
	mountTmpfs(t, vol, "a/b")
	e.container("victim", []string{"true"}, func(s *specs.Spec) {
		s.Mounts = append(s.Mounts, volume("/vol", vol, "rbind", "rw"))
	})
	out := e.attack("attacker", fmt.Sprintf(`
V=$S/containers/victim
mv $V $S/containers/v2 && echo moved-container-dir
ln -s %[1]s $V/link && echo linked-in-container-dir
mv $V/rootfs $V/r2 && echo moved-rootfs
for m in $V/mount-*; do
  [ -d $m/a/b ] || continue
  mv $m/a $m/moved && ln -s %[1]s $m/a && echo swapped-submount-parent
done
true`, target.path))
	for _, done := range []string{"moved-container-dir", "linked-in-container-dir", "moved-rootfs"} {
		if strings.Contains(out, done) {
			t.Errorf("guest root succeeded: %s", done)
		}
	}
	if !strings.Contains(out, "swapped-submount-parent") {
		t.Errorf("guest root could not rename inside a writable volume; the attack is not what this test means")
	}
	if err := e.sb.DeleteContainer(context.Background(), "victim"); err != nil {
		t.Fatalf("delete victim: %v", err)
	}
	target.assertUntouched(t)
	if m, _ := sharefs.MountsUnder(filepath.Join(e.sb.share.Dir(), "containers", "victim")); len(m) > 0 {
		t.Errorf("mounts left after deleting the victim: %v", m)
	}
	// Put the volume back for the tmpfs cleanup.
	if err := os.Remove(filepath.Join(vol, "a")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(vol, "moved"), filepath.Join(vol, "a")); err != nil {
		t.Fatal(err)
	}
}

// Guest root outside the container can write no more of a read-only volume, or of a
// read-only root file system, than the container itself; the container's `ro` volume is
// read-only at its top only, as with runc.
func TestAttackReadOnlyVolumes(t *testing.T) {
	e := newEnv(t)
	vols := map[string]string{}
	for _, mode := range []string{"rro", "ro"} {
		v := t.TempDir()
		if err := os.WriteFile(filepath.Join(v, "marker-"+mode), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		mountTmpfs(t, v, "sub")
		vols[mode] = v
	}
	// The container probes its own access, after the attacker ran.
	probe := `
for m in rro ro; do
  touch /$m/top 2>/dev/null && echo container-$m-top
  touch /$m/sub/x 2>/dev/null && echo container-$m-sub
done
touch /rootfs-probe 2>/dev/null && echo container-rootfs
true`
	victim := e.container("victim", []string{"sh", "-c", probe}, func(s *specs.Spec) {
		s.Root.Readonly = true
		s.Mounts = append(s.Mounts, volume("/rro", vols["rro"], "rbind", "rro"), volume("/ro", vols["ro"], "rbind", "ro"))
	})
	guest := e.attack("attacker", `
V=$S/containers/victim
for d in $V/mount-*; do
  for m in rro ro; do
    [ -e $d/marker-$m ] || continue
    touch $d/top 2>/dev/null && echo guest-$m-top
    touch $d/sub/x 2>/dev/null && echo guest-$m-sub
  done
done
ls $V/mount-*/marker-* | grep -c marker | sed 's/^/volumes-found-/'
touch $V/rootfs/rootfs-probe 2>/dev/null && echo guest-rootfs
true`)
	if !strings.Contains(guest, "volumes-found-2") {
		t.Fatalf("the attacker did not find both volumes in the export")
	}
	code, container, errs := e.run(victim, nil)
	if code != 0 {
		t.Fatalf("victim: exit %d %q %q", code, container, errs)
	}
	t.Logf("container:\n%s", container)
	for _, what := range []string{"rro-top", "rro-sub", "ro-top", "ro-sub", "rootfs"} {
		c, g := strings.Contains(container, "container-"+what), strings.Contains(guest, "guest-"+what)
		if g && !c {
			t.Errorf("%s: guest root could write it, the container could not", what)
		}
	}
	for _, what := range []string{"rro-top", "rro-sub", "ro-top", "rootfs"} {
		if strings.Contains(guest, "guest-"+what) {
			t.Errorf("%s: guest root wrote it, want it read-only", what)
		}
	}
	// Unshare the volumes before the test's cleanup unmounts their submounts.
	if err := e.sb.DeleteContainer(context.Background(), "victim"); err != nil {
		t.Fatal(err)
	}
	// runc's `ro` is top-only: the container writes the submount of its ro volume.
	if !strings.Contains(container, "container-ro-sub") {
		t.Errorf("the container could not write the submount of its ro volume")
	}
	for _, p := range []string{filepath.Join(vols["rro"], "top"), filepath.Join(vols["rro"], "sub", "x"), filepath.Join(vols["ro"], "top")} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s exists on the host, in a part of a volume that is read-only for the container", p)
		}
	}
}

// A container whose share fails half-way (a bind source that does not exist) leaves no
// mount behind.
func TestFailedShareLeavesNoMount(t *testing.T) {
	e := newEnv(t)
	vol := t.TempDir()
	mountTmpfs(t, vol, "sub")
	dir := t.TempDir()
	spec, err := bundle.CreateBusybox(dir, []string{"true"}, false)
	if err != nil {
		t.Fatal(err)
	}
	spec.Mounts = append(spec.Mounts, volume("/vol", vol, "rbind", "ro"), volume("/gone", filepath.Join(dir, "does-not-exist"), "rbind"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	plan, err := oci.ContainerConfig(ctx, "half", dir, spec, oci.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.sb.CreateContainer(ctx, ContainerConfig{Plan: plan}); err == nil {
		t.Fatal("create with a missing bind source succeeded")
	}
	if m, _ := sharefs.MountsUnder(filepath.Join(e.sb.share.Dir(), "containers")); len(m) != 1 {
		t.Errorf("mounts in the view after the failed create: %v, want only the view", m)
	}
	if _, err := os.Lstat(filepath.Join(e.sb.Dir(), "mounts", "half")); !os.IsNotExist(err) {
		t.Errorf("container dir in the host-only tree after the failed create: %v", err)
	}
}

// Cleanup of a sandbox whose owner died (its Sandbox value is simply dropped here) kills
// the VM and leaves no mount anywhere.
func TestCleanupAbandonedSandbox(t *testing.T) {
	g := testutil.RequiresVM(t)
	root, err := os.MkdirTemp("", "vst")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(root)
	vol := t.TempDir()
	sub := mountTmpfs(t, vol, "sub")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sb, err := Create(ctx, Config{ID: "sb", Root: root, VM: hypervisor.Config{
		Kernel: g.Kernel, Initrd: g.Initrd, VCPUs: 1, MaxVCPUs: 2, MemoryMiB: 256, MaxMemoryMiB: 512, MemorySlots: 2,
	}})
	if err != nil {
		t.Fatal(err)
	}
	pid := sb.VM().Pid()
	e := &env{t: t, sb: sb, root: root}
	e.container("c1", []string{"sleep", "1000"}, func(s *specs.Spec) {
		s.Mounts = append(s.Mounts, volume("/vol", vol, "rbind", "rw"))
	})
	if m, _ := sharefs.MountsUnder(root); len(m) < 3 {
		t.Fatalf("mounts before cleanup: %v, want the view, the rootfs, the volume and its submount", m)
	}
	if err := sb.agent.Close(); err != nil {
		t.Logf("close agent: %v", err)
	}
	if err := Cleanup(ctx, root, "sb"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-sb.VM().Done():
	case <-time.After(30 * time.Second):
		t.Error("the VM still runs after Cleanup")
	}
	assertNoLeftovers(t, root, pid)
	if m, _ := sharefs.MountsUnder(vol); len(m) != 1 || m[0] != sub {
		t.Errorf("mounts under the volume after Cleanup: %v, want only its own %s", m, sub)
	}
}
