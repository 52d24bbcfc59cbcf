package shim_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vessel-containers/vessel/internal/idrange"
	"github.com/vessel-containers/vessel/internal/jail"
	"github.com/vessel-containers/vessel/internal/jail/jailtest"
	"github.com/vessel-containers/vessel/internal/testutil"
)

// usernsPool is the id pool of the unprivileged-VMM tests: far above any host user.
const usernsPool = "2000000000-2000131071"

// usernsProbe is guest root attacking the host through the shared fs: it rewrites an
// image file owned by root, makes setuid-root copies of busybox in its rootfs and in a
// volume, gives a volume file to root, tries device nodes in both, gives a copy of
// busybox in the volume a file capability (the volume's setfcap, testutil/cmd/setfcap)
// and appends to the volume's root-owned hostroot. It records what it sees as the owner
// of an image file, and finishes with a marker.
const usernsProbe = `exec 2>/uprobe-log
echo guest-was-here >>/etc/passwd &&
stat -c '%u %g' /bin/busybox >/uprobe-owner &&
cp /bin/busybox /uprobe-suid && chown 0:0 /uprobe-suid && chmod 4755 /uprobe-suid &&
cp /bin/busybox /vol/suid && chown 0:0 /vol/suid && chmod 4755 /vol/suid &&
touch /vol/rootfile && chown 0:0 /vol/rootfile &&
{ mknod /uprobe-null c 1 3; mknod /vol/null c 1 3; true; } 2>/uprobe-mknod &&
cp /bin/busybox /vol/capbin && { /vol/setfcap /vol/capbin; echo "rc=$?"; } >/uprobe-setfcap 2>&1 &&
{ echo guest-was-here >>/vol/hostroot; echo "rc=$?"; } >/uprobe-hostroot 2>&1 &&
touch /uprobe-done && exec sleep 1000`

// TestUnprivilegedVMM runs a container whose QEMU has its own host ids
// (hypervisor.vmm_id_range) and attacks from guest root: what it creates in its rootfs
// and in a volume is owned by the sandbox's unprivileged host ids, never by host root,
// and no device node appears; while the image's files still look root-owned to the
// container and stay writable for its root. From the host, QEMU runs as those ids in its
// own user namespace, with no_new_privs, its seccomp filter and capabilities that count
// in that namespace only; and the id lease is given back when the sandbox goes.
//
// With vmm_file_ids = "container" the same attack finds runc's semantics instead: what
// guest root makes in the snapshot's upper directory and in the volume is owned by host
// root (a setuid-root file there is what runc's container root can make too), and it
// writes the volume's root-owned file; but no device node appears and no file
// capability is set, in either mode.
func TestUnprivilegedVMM(t *testing.T) {
	for _, tc := range []struct{ fs, fileIDs string }{
		{"virtio-9p", "sandbox"}, {"virtio-fs", "sandbox"}, {"virtio-9p", "container"}, {"virtio-fs", "container"},
	} {
		t.Run(tc.fs+"/"+tc.fileIDs, func(t *testing.T) { testUnprivilegedVMM(t, tc.fs, tc.fileIDs) })
	}
}

func testUnprivilegedVMM(t *testing.T, sharedFS, fileIDs string) {
	h := newHarnessConfig(t, fmt.Sprintf("vmm_id_range = %q\nshared_fs = %q\nvmm_file_ids = %q\n", usernsPool, sharedFS, fileIDs))
	if err := os.Chmod(h.sbRoot, 0o711); err != nil { // the VMM's ids pass through it to the export
		t.Fatal(err)
	}
	pool, err := idrange.ParsePool(usernsPool)
	if err != nil {
		t.Fatal(err)
	}
	mapped := fileIDs == "container"
	vol := t.TempDir()
	volMode := os.FileMode(0o777) // strict: the sandbox's ids must be able to write it
	if mapped {
		volMode = 0o755 // root's, as runc's container root writes it
	}
	if err := os.Chmod(vol, volMode); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(vol, "hostroot"), []byte("host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	setfcap := testutil.BuildStatic(t, "./internal/testutil/cmd/setfcap")
	if b, err := os.ReadFile(setfcap); err != nil || os.WriteFile(filepath.Join(vol, "setfcap"), b, 0o755) != nil {
		t.Fatalf("copy setfcap into the volume: %v", err)
	}
	const id = "unpriv"
	h.start(id, []string{"--mount", "type=bind,src=" + vol + ",dst=/vol,options=rbind:rw"}, "sh", "-c", usernsProbe)

	done := findShared(t, h.qemuPid(id), h.sbRoot, "uprobe-done", 2*time.Minute)
	if done == "" {
		log, _ := os.ReadFile(findShared(t, h.qemuPid(id), h.sbRoot, "uprobe-log", 0))
		t.Fatalf("the container's probe did not finish; its stderr: %q", log)
	}
	root := filepath.Dir(done)
	// Through the share the rootfs shows its owners as the VMM sees them; the host's
	// owners are in the snapshot's upper directory.
	upper := root
	if mapped {
		snaps := filepath.Join(h.ctd.Dir, "root", "io.containerd.snapshotter.v1.overlayfs", "snapshots")
		if upper = filepath.Dir(findUnder(t, snaps, "uprobe-done", 0)); upper == "." {
			t.Fatalf("no uprobe-done in a snapshot under %s", snaps)
		}
	}

	pid := h.qemuPid(id)
	uidMap, err := os.ReadFile(fmt.Sprintf("/proc/%d/uid_map", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(uidMap))
	if len(f) != 3 || f[0] != "0" || f[2] != strconv.Itoa(idrange.Size) {
		t.Fatalf("qemu uid_map %q, want one line 0 <start> %d", uidMap, idrange.Size)
	}
	start, err := strconv.ParseUint(f[1], 10, 32)
	if err != nil || start < uint64(pool.Start) || start > uint64(pool.End) {
		t.Fatalf("qemu's ids start at %q, outside the pool %s", f[1], usernsPool)
	}
	base := uint32(start)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{"Uid", "Gid"} {
		line := statusLine(string(status), field)
		for _, v := range strings.Fields(line) {
			if v != strconv.Itoa(int(base)) {
				t.Errorf("qemu %s: %q, want every id %d", field, line, base)
				break
			}
		}
	}
	if g := statusLine(string(status), "Groups"); g != "" {
		t.Errorf("qemu keeps supplementary groups %q", g)
	}
	own, _ := os.Readlink("/proc/self/ns/user")
	if ns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/user", pid)); ns == own || ns == "" {
		t.Errorf("qemu's user namespace %q is the host's %q", ns, own)
	}
	// Its root is the jail: /etc holds only the loader's cache, /dev only what it opens.
	for dir, allowed := range map[string][]string{"etc": {"ld.so.cache"}, "dev": {"null", "urandom", "kvm"}} {
		ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/root/%s", pid, dir))
		if err != nil {
			t.Errorf("qemu's /%s: %v", dir, err)
		}
		for _, e := range ents {
			if !slices.Contains(allowed, e.Name()) {
				t.Errorf("qemu's root holds /%s/%s; its jail should hold only %q there", dir, e.Name(), allowed)
			}
		}
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d/root/%s", pid, h.sbRoot)); err != nil {
		t.Errorf("qemu's root lacks the sandbox root: %v", err)
	}
	only := "shared" // 9p: the export
	if sharedFS == "virtio-fs" {
		only = "virtiofsd.sock"
	}
	if ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/root/%s/%s", pid, h.sbRoot, id)); len(ents) != 1 || ents[0].Name() != only {
		names := []string{}
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("qemu sees %q in its sandbox directory, want only %s", names, only)
	}
	qmp := findUnder(t, h.sbRoot, "qmp.sock", 0)
	want := jailtest.Want{
		Caps:      []jail.Cap{jail.CapChown, jail.CapDACOverride, jail.CapFowner, jail.CapFsetid},
		Seccomp:   2,
		Dirs:      []string{h.sbRoot},
		Devices:   []string{"/dev/null", "/dev/urandom", "/dev/kvm"},
		SocketDir: filepath.Dir(qmp),
	}
	if sharedFS == "virtio-fs" {
		want.ClientSockets, want.Memfd = 2, true
		// virtiofsd: its own user namespace, on the same ids.
		fsd, err := exec.Command("pgrep", "-f", "virtiofsd.*"+h.sbRoot).Output()
		if err != nil {
			t.Fatalf("no virtiofsd: %v", err)
		}
		for _, p := range strings.Fields(string(fsd)) {
			if m, _ := os.ReadFile("/proc/" + p + "/uid_map"); !strings.HasPrefix(strings.Join(strings.Fields(string(m)), " "), "0 "+strconv.Itoa(int(base))+" ") {
				t.Errorf("virtiofsd pid %s: uid_map %q, want the sandbox's ids from %d", p, m, base)
			}
		}
	}
	jailtest.Check(t, pid, want)

	// The container still sees the image as its owners made it, and its root could
	// write a root-owned image file.
	if owner, _ := os.ReadFile(filepath.Join(root, "uprobe-owner")); strings.TrimSpace(string(owner)) != "0 0" {
		t.Errorf("the container sees /bin/busybox owned by %q, want \"0 0\"", owner)
	}
	if passwd, _ := os.ReadFile(filepath.Join(root, "etc", "passwd")); !bytes.Contains(passwd, []byte("guest-was-here")) {
		t.Error("guest root could not write the image's /etc/passwd")
	}
	// On the host, strict: nothing it made is root's; container: all of it is root's, as
	// runc's container root makes it. Never a device, never a file capability.
	owner := base
	if mapped {
		owner = 0
	}
	for _, p := range []string{
		filepath.Join(upper, "uprobe-suid"), filepath.Join(upper, "etc", "passwd"),
		filepath.Join(vol, "suid"), filepath.Join(vol, "rootfile"),
	} {
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		if st.Uid != owner || st.Gid != owner {
			t.Errorf("%s on the host: uid %d gid %d mode %#o, want %d", p, st.Uid, st.Gid, st.Mode, owner)
		}
		t.Logf("%s on the host: uid %d gid %d mode %#o", p, st.Uid, st.Gid, st.Mode)
	}
	hostroot, _ := os.ReadFile(filepath.Join(vol, "hostroot"))
	if wrote := bytes.Contains(hostroot, []byte("guest-was-here")); wrote != mapped {
		out, _ := os.ReadFile(filepath.Join(root, "uprobe-hostroot"))
		t.Errorf("container root wrote the volume's root-owned file: %v, want %v (guest: %q)", wrote, mapped, out)
	}
	if out, _ := os.ReadFile(filepath.Join(root, "uprobe-setfcap")); !bytes.Contains(out, []byte("rc=1")) {
		t.Errorf("setting a file capability in the guest: %q, want it refused", out)
	}
	if sz, err := unix.Getxattr(filepath.Join(vol, "capbin"), "security.capability", nil); !errors.Is(err, unix.ENODATA) {
		t.Errorf("the volume's capbin on the host has a security.capability (%d bytes, %v), want none", sz, err)
	}
	for _, p := range []string{filepath.Join(upper, "uprobe-null"), filepath.Join(vol, "null")} {
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err == nil && (st.Mode&unix.S_IFMT == unix.S_IFCHR || st.Mode&unix.S_IFMT == unix.S_IFBLK) {
			t.Errorf("guest root made a device node on the host: %s (mode %#o)", p, st.Mode)
		}
	}
	mknod, _ := os.ReadFile(filepath.Join(root, "uprobe-mknod"))
	t.Logf("mknod in the guest: %q", mknod)

	h.remove(id)
	leases, err := os.ReadDir(idrange.DefaultLeaseDir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	for _, l := range leases {
		b, _ := os.ReadFile(filepath.Join(idrange.DefaultLeaseDir, l.Name()))
		if strings.Contains(string(b), h.sbRoot) {
			t.Errorf("lease %s still held after the sandbox was removed: %q", l.Name(), b)
		}
	}
}

// statusLine is the value of field in /proc/<pid>/status text.
func statusLine(status, field string) string {
	for _, l := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// TestUnprivilegedVMMPod runs a pod with an unprivileged VMM: a container added after the
// VM booted gets its rootfs idmapped too (the mount reaches QEMU's own mount namespace),
// and after the shim is killed, containerd's cleanup leaves nothing behind (the harness
// checks mounts, processes and state) and the sandbox's ids are free again.
func TestUnprivilegedVMMPod(t *testing.T) {
	// One slot: the sandbox after the crash gets ids only if the dead one's were freed.
	const onePool = "2000200000-2000265535"
	h := newHarnessConfig(t, fmt.Sprintf("vmm_id_range = %q\n", onePool))
	if err := os.Chmod(h.sbRoot, 0o711); err != nil {
		t.Fatal(err)
	}
	events := h.ctd.Events(t)
	pod := []string{"--annotation", "io.kubernetes.cri.container-type=sandbox", "--annotation", "io.kubernetes.cri.sandbox-id=upod"}
	h.start("upod", pod, "sleep", "1000")
	member := []string{"--annotation", "io.kubernetes.cri.container-type=container", "--annotation", "io.kubernetes.cri.sandbox-id=upod"}
	h.start("uapp", member, "sh", "-c", "echo app >>/etc/passwd && touch /uapp-done && exec sleep 1000")
	done := findShared(t, h.qemuPid("upod"), h.sbRoot, "uapp-done", 2*time.Minute)
	if done == "" {
		t.Fatal("the pod's second container did not run")
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(filepath.Dir(done), "etc", "passwd"), &st); err != nil {
		t.Fatal(err)
	}
	pool, _ := idrange.ParsePool(onePool)
	if st.Uid < pool.Start || st.Uid > pool.End {
		t.Errorf("the second container's /etc/passwd on the host is owned by %d, want an id of the pool %s", st.Uid, onePool)
	}

	if err := unix.Kill(h.shimPid("upod"), unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, events, "/tasks/exit", `"upod"`)
	for _, id := range []string{"uapp", "upod"} {
		testutil.WaitFor(t, "the task to stop", func() bool { s := h.taskStatus(id); return s == "STOPPED" || s == "" })
		if h.taskStatus(id) != "" {
			h.ctr("task", "delete", id)
		}
		h.ctr("container", "delete", id)
	}
	// The lease names the sandbox directory, which cleanup removed: the next sandbox
	// takes the slot over.
	testutil.WaitFor(t, "the sandbox directory to go", func() bool {
		_, err := os.Stat(filepath.Join(h.sbRoot, "upod"))
		return os.IsNotExist(err)
	})
	h.start("unext", nil, "sleep", "1000")
	uidMap, err := os.ReadFile(fmt.Sprintf("/proc/%d/uid_map", h.qemuPid("unext")))
	if err != nil {
		t.Fatal(err)
	}
	if f := strings.Fields(string(uidMap)); len(f) != 3 || f[1] != strconv.Itoa(int(pool.Start)) {
		t.Errorf("the next sandbox's ids: uid_map %q", uidMap)
	}
}

// TestUnprivilegedVMMCopyMode runs a container in copy mode (shared_fs = "none") with an
// unprivileged VMM: nothing is shared, the shim copies the rootfs into the guest as it
// is on disk, so the container sees the image's owners and QEMU still runs on the
// sandbox's ids; the lease is given back at removal.
func TestUnprivilegedVMMCopyMode(t *testing.T) {
	h := newHarnessConfig(t, fmt.Sprintf("vmm_id_range = %q\nshared_fs = \"none\"\n", usernsPool))
	if err := os.Chmod(h.sbRoot, 0o711); err != nil {
		t.Fatal(err)
	}
	pool, _ := idrange.ParsePool(usernsPool)
	h.start("ucopy", nil, "sleep", "1000")
	uidMap, err := os.ReadFile(fmt.Sprintf("/proc/%d/uid_map", h.qemuPid("ucopy")))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(uidMap))
	start, _ := strconv.ParseUint(f[1], 10, 32)
	if len(f) != 3 || f[0] != "0" || start < uint64(pool.Start) || start > uint64(pool.End) {
		t.Fatalf("qemu uid_map %q, want 0 mapped onto an id of the pool %s", uidMap, usernsPool)
	}
	if got := strings.TrimSpace(h.ctr("task", "exec", "--exec-id", "owner", "ucopy", "stat", "-c", "%u %g", "/bin/busybox")); got != "0 0" {
		t.Errorf("the container sees /bin/busybox owned by %q, want \"0 0\"", got)
	}
	if out := h.ctr("task", "exec", "--exec-id", "root", "ucopy", "grep", " / ", "/proc/mounts"); strings.Contains(out, "9p") || strings.Contains(out, "virtiofs") {
		t.Errorf("copy mode container's root is a shared fs: %q", out)
	}
	h.remove("ucopy")
	leases, err := os.ReadDir(idrange.DefaultLeaseDir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	for _, l := range leases {
		if b, _ := os.ReadFile(filepath.Join(idrange.DefaultLeaseDir, l.Name())); strings.Contains(string(b), h.sbRoot) {
			t.Errorf("lease %s still held after the sandbox was removed: %q", l.Name(), b)
		}
	}
}

// TestUnprivilegedVMMNativeSnapshot runs a container on containerd's native snapshotter
// (a bind mount of a plain directory, which cannot be idmapped layer by layer) with an
// unprivileged VMM in the strict mode (vmm_file_ids = "sandbox"): guest root's setuid
// copy and changed image file are owned on the host by the sandbox's ids, the snapshot's
// own directory is not written, and after removal no mount or lease is left.
func TestUnprivilegedVMMNativeSnapshot(t *testing.T) {
	h := newHarnessConfig(t, fmt.Sprintf("vmm_id_range = %q\nvmm_file_ids = \"sandbox\"\n", usernsPool))
	if err := os.Chmod(h.sbRoot, 0o711); err != nil { // the VMM's ids pass through it to the export
		t.Fatal(err)
	}
	h.ctr("image", "import", "--all-platforms", "--snapshotter", "native", testutil.BuildBusyboxImage(t))
	const id = "unative"
	h.start(id, []string{"--snapshotter", "native"}, "sh", "-c",
		"echo guest-was-here >>/etc/passwd && cp /bin/busybox /nsuid && chown 0:0 /nsuid && chmod 4755 /nsuid && touch /native-done && exec sleep 1000")
	done := findShared(t, h.qemuPid(id), h.sbRoot, "native-done", 2*time.Minute)
	if done == "" {
		t.Fatal("the container did not run its probe")
	}
	r, ok, err := idrange.OfProcess(h.qemuPid(id))
	if err != nil || !ok {
		t.Fatalf("qemu's ids: %v %v", ok, err)
	}
	root := filepath.Dir(done)
	for _, name := range []string{"nsuid", "etc/passwd"} {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(root, name), &st); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s on the host: uid %d gid %d mode %#o", name, st.Uid, st.Gid, st.Mode)
		if st.Uid != r.Start || st.Gid != r.Start {
			t.Errorf("%s on the host: uid %d gid %d, want the sandbox's root %d", name, st.Uid, st.Gid, r.Start)
		}
	}
	var snap string
	for _, f := range strings.Fields(h.ctr("snapshots", "--snapshotter", "native", "mounts", "/mnt", id)) {
		if strings.HasPrefix(f, "/") && f != "/mnt" {
			snap = f
		}
	}
	if snap == "" {
		t.Fatal("no native snapshot directory found")
	}
	if _, err := os.Lstat(filepath.Join(snap, "nsuid")); !os.IsNotExist(err) {
		t.Errorf("guest root's file appeared in the snapshot directory %s: %v", snap, err)
	}
	if b, _ := os.ReadFile(filepath.Join(snap, "etc", "passwd")); bytes.Contains(b, []byte("guest-was-here")) {
		t.Errorf("the snapshot's etc/passwd was written")
	}
	h.remove(id)
	if b, _ := os.ReadFile("/proc/self/mountinfo"); bytes.Contains(b, []byte(".vessel-rootfs-"+id)) {
		t.Error("the idmapped rootfs overlay is still mounted")
	}
	ents, _ := os.ReadDir(idrange.DefaultLeaseDir)
	for _, e := range ents {
		if b, _ := os.ReadFile(filepath.Join(idrange.DefaultLeaseDir, e.Name())); strings.Contains(string(b), h.sbRoot) {
			t.Errorf("lease %s still held after removal: %q", e.Name(), b)
		}
	}
}
