package sandbox

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
	"github.com/vessel-containers/vessel/internal/config"
	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/persist"
	"github.com/vessel-containers/vessel/internal/procid"
	"github.com/vessel-containers/vessel/internal/testutil"
)

// newVirtioFSEnv boots a sandbox sharing files by virtio-fs and checks that its virtiofsd
// runs confined: in its own pid namespace, with the namespace sandbox asked for.
func newVirtioFSEnv(t *testing.T) *env {
	t.Helper()
	e := newEnvFS(t, hypervisor.SharedFSVirtioFS)
	if e.sb.fsd == nil {
		t.Fatal("virtio-fs sandbox has no virtiofsd")
	}
	id := e.sb.fsd.ID()
	if !id.Alive() {
		t.Fatalf("virtiofsd %s is not running", id)
	}
	cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(id.Pid), "cmdline"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(cmdline, []byte("sandbox=namespace")) || !bytes.Contains(cmdline, []byte("source="+e.sb.share.Dir())) {
		t.Errorf("virtiofsd command line %q: want the namespace sandbox and the export as source", bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))
	}
	self, _ := os.Readlink("/proc/self/ns/pid")
	if ns, _ := os.Readlink(filepath.Join("/proc", strconv.Itoa(id.Pid), "ns/pid")); ns == "" || ns == self {
		t.Errorf("virtiofsd pid namespace %q: want its own (ours is %s)", ns, self)
	}
	checkServerConfined(t, id.Pid)
	st, err := persist.Load(e.sb.dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.FSDaemonPid != id.Pid || st.FSDaemonStartTime != id.StartTime {
		t.Errorf("persisted daemon %d/%d, want %s", st.FSDaemonPid, st.FSDaemonStartTime, id)
	}
	return e
}

// checkServerConfined finds the process that serves the guest (the daemon forks it into
// the namespaces it makes once the VMM connected) and checks that it runs under a seccomp
// filter and no_new_privs, without cap_sys_admin and cap_mknod.
func checkServerConfined(t *testing.T, pid int) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "task", strconv.Itoa(pid), "children"))
	if err != nil {
		t.Fatal(err)
	}
	kids := strings.Fields(string(b))
	if len(kids) != 1 {
		t.Fatalf("virtiofsd %d has children %q, want the one file server", pid, kids)
	}
	status, err := os.ReadFile(filepath.Join("/proc", kids[0], "status"))
	if err != nil {
		t.Fatal(err)
	}
	fields := map[string]string{}
	for _, l := range strings.Split(string(status), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			fields[k] = strings.TrimSpace(v)
		}
	}
	if fields["Seccomp"] != "2" || fields["NoNewPrivs"] != "1" {
		t.Errorf("file server %s: Seccomp %q NoNewPrivs %q, want 2 and 1", kids[0], fields["Seccomp"], fields["NoNewPrivs"])
	}
	eff, err := strconv.ParseUint(fields["CapEff"], 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	const sysAdmin, mknod = 21, 27
	if eff&(1<<sysAdmin|1<<mknod) != 0 {
		t.Errorf("file server %s has CapEff %s: want neither cap_sys_admin nor cap_mknod", kids[0], fields["CapEff"])
	}
	self, _ := os.Readlink("/proc/self/ns/mnt")
	if ns, _ := os.Readlink(filepath.Join("/proc", kids[0], "ns/mnt")); ns == self {
		t.Errorf("file server %s shares our mount namespace", kids[0])
	}
}

// TestVirtioFS runs containers over virtio-fs: they read their image, write their rootfs and
// a bind volume, and the host sees the writes; the host's writes reach the container.
func TestVirtioFS(t *testing.T) {
	e := newVirtioFSEnv(t)
	vol := t.TempDir()
	if err := os.WriteFile(filepath.Join(vol, "from-host"), []byte("hello guest"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := e.container("c1", []string{"sh", "-c", `set -e
cat /vol/from-host; echo
echo from-guest > /vol/from-guest
echo rootfs-write > /written
mkdir /vol/d && echo nested > /vol/d/f && mv /vol/d/f /vol/d/g
stat -c %s /bin/busybox`}, func(s *specs.Spec) {
		s.Mounts = append(s.Mounts, volume("/vol", vol, "rbind", "rw"))
	})
	code, out, errs := e.run(c, nil)
	if code != 0 {
		t.Fatalf("exit %d: %s %s", code, out, errs)
	}
	if !strings.HasPrefix(out, "hello guest\n") {
		t.Errorf("container read %q from the volume, want the host's file", out)
	}
	for p, want := range map[string]string{
		filepath.Join(vol, "from-guest"): "from-guest\n",
		filepath.Join(vol, "d/g"):        "nested\n",
	} {
		if got, err := os.ReadFile(p); err != nil || string(got) != want {
			t.Errorf("host %s: %q %v, want %q", p, got, err, want)
		}
	}
	if got, err := os.ReadFile(filepath.Join(c.rootfs, "written")); err != nil || string(got) != "rootfs-write\n" {
		t.Errorf("host rootfs file: %q %v", got, err)
	}
	if err := e.sb.DeleteContainer(context.Background(), "c1"); err != nil {
		t.Fatal(err)
	}
	// A second container after the first one's mounts are gone.
	c2 := e.container("c2", []string{"sh", "-c", "cat /vol/from-guest"}, func(s *specs.Spec) {
		s.Mounts = append(s.Mounts, volume("/vol", vol, "rbind", "ro"))
	})
	if code, out, errs := e.run(c2, nil); code != 0 || out != "from-guest\n" {
		t.Fatalf("second container: exit %d %q %q", code, out, errs)
	}
}

// TestVirtioFSDaemonKilled kills the sandbox's virtiofsd while a container runs: the
// sandbox stops its VM, the container's wait fails naming virtiofsd, and Delete (the
// env's cleanup) leaves nothing behind.
func TestVirtioFSDaemonKilled(t *testing.T) {
	e := newVirtioFSEnv(t)
	c := e.container("c1", []string{"sh", "-c", "echo up; exec sleep 600"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	st := c.Attach(ctx, "", IO{Stdout: w})
	defer st.Close()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 3)
	if _, err := r.Read(buf); err != nil || string(buf) != "up\n" {
		t.Fatalf("container output %q %v", buf, err)
	}
	fsd := e.sb.fsd.ID()
	if err := syscall.Kill(fsd.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_, err = c.Wait(ctx, "")
	w.Close()
	if err == nil {
		t.Fatal("wait succeeded after virtiofsd was killed")
	}
	t.Logf("wait: %v", err)
	if !strings.Contains(err.Error(), "virtiofsd") || !strings.Contains(err.Error(), "killed") {
		t.Errorf("wait error %q does not say that virtiofsd was killed", err)
	}
	select {
	case <-e.sb.VM().Done():
	case <-ctx.Done():
		t.Fatal("vm still runs after its virtiofsd died")
	}
	if fsd.Exists() {
		t.Errorf("virtiofsd %s not reaped", fsd)
	}
}

// TestVirtioFSCleanupAfterOwnerDied: the state of a sandbox whose owner died names its
// virtiofsd; Cleanup kills and removes it with the VM.
func TestVirtioFSCleanupAfterOwnerDied(t *testing.T) {
	e := newVirtioFSEnv(t)
	// Stand-in for a dead owner: Cleanup works from the persisted state only.
	vmm, err := procid.Of(e.sb.VM().Pid())
	if err != nil {
		t.Fatal(err)
	}
	fsd := e.sb.fsd.ID()
	if err := Cleanup(context.Background(), e.root, e.sb.id); err != nil {
		t.Fatal(err)
	}
	if !vmm.Wait(10*time.Second) || !fsd.Wait(10*time.Second) {
		t.Fatalf("after Cleanup: vm exists %v, virtiofsd exists %v", vmm.Exists(), fsd.Exists())
	}
	if _, err := os.Stat(e.sb.dir); !os.IsNotExist(err) {
		t.Errorf("sandbox dir after Cleanup: %v", err)
	}
}

// TestSetuidThroughShare is guest root's attempt to plant a setuid-root binary and a
// device node on the host through a writable volume, over 9p and virtio-fs. Both file
// servers run as host root with the capabilities to chown and chmod files of any owner,
// so the setuid binary gets through: the test records that (docs/security.md says so)
// and fails if it ever changes, so the document gets updated. Device nodes are refused.
func TestSetuidThroughShare(t *testing.T) {
	for _, fs := range []hypervisor.SharedFS{hypervisor.SharedFS9P, hypervisor.SharedFSVirtioFS} {
		t.Run(string(fs), func(t *testing.T) {
			e := newEnvFS(t, fs)
			vol := t.TempDir()
			c := e.container("attacker", []string{"sh", "-c", `set -e
cp /bin/busybox /vol/suid && chown 0:0 /vol/suid && chmod 4755 /vol/suid
touch /vol/dev-attempt; mknod /vol/null c 1 3 && echo mknod-ok || echo mknod-refused
ls -ln /vol`}, func(s *specs.Spec) {
				privilegedNoPidNS(s)
				s.Mounts = append(s.Mounts, volume("/vol", vol, "rbind", "rw"))
			})
			code, out, errs := e.run(c, nil)
			t.Logf("exit %d\n%s%s", code, out, errs)
			var st syscall.Stat_t
			if err := syscall.Stat(filepath.Join(vol, "suid"), &st); err != nil {
				t.Fatalf("host file: %v", err)
			}
			suidRoot := st.Uid == 0 && st.Mode&syscall.S_ISUID != 0
			t.Logf("%s: host file mode %o uid %d: setuid-root %v; %s", fs, st.Mode, st.Uid, suidRoot, strings.TrimSpace(firstLine(out, "mknod")))
			if !suidRoot {
				t.Errorf("guest root could not make a setuid-root file on the host over %s: docs/security.md says it can; update it", fs)
			}
			if _, err := os.Lstat(filepath.Join(vol, "null")); err == nil || !strings.Contains(out, "mknod-refused") {
				t.Errorf("guest root created a device node on the host over %s (%v)", fs, err)
			}
		})
	}
}

func firstLine(s, prefix string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return fmt.Sprintf("(no %s line)", prefix)
}

// TestVirtioFSGrowMemory hot-plugs memory into a virtio-fs VM and takes it back: the added
// memory must be shared with virtiofsd too (vhost-user maps all guest memory), the memory
// taken back no longer mapped, and files keep flowing.
func TestVirtioFSGrowMemory(t *testing.T) {
	e := newVirtioFSEnv(t)
	r, ok := e.sb.VM().(hypervisor.Resizer)
	if !ok {
		t.Skip("the driver cannot grow VMs")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	before := memfdMappings(t, e.sb.VM().Pid())
	if err := r.Grow(ctx, 1, 384); err != nil {
		t.Fatal(err)
	}
	if after := memfdMappings(t, e.sb.VM().Pid()); after <= before {
		t.Errorf("QEMU maps %d memfd regions after growing, %d before: the added memory is not shared", after, before)
	}
	if err := e.sb.Agent().OnlineCPUMem(ctx, &agentv1.OnlineCPUMemRequest{}); err != nil {
		t.Fatal(err)
	}
	c := e.container("c1", []string{"sh", "-c", "head -c 20000000 /dev/zero > /big && wc -c < /big && rm /big"}, nil)
	if code, out, errs := e.run(c, nil); code != 0 || out != "20000000\n" {
		t.Fatalf("after growing: exit %d %q %q", code, out, errs)
	}

	// Taking the memory back: the guest offlines it, QEMU unplugs the DIMM and drops its
	// memfd backend (virtiofsd is told the new memory table), and files keep flowing.
	sh, ok := e.sb.VM().(hypervisor.MemoryShrinker)
	if !ok {
		return
	}
	ranges, err := sh.MemoryRanges(ctx, 256)
	if err != nil || len(ranges) != 1 {
		t.Fatalf("MemoryRanges(256): %v, %v; want the one DIMM", ranges, err)
	}
	if _, err := e.sb.Agent().OfflineMemory(ctx, []*agentv1.MemoryRange{{Addr: ranges[0].Addr, Size: ranges[0].Size}}, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := sh.ShrinkMemory(ctx, 256); err != nil {
		t.Fatal(err)
	}
	// QEMU unmaps a deleted backend's memory once its RCU grace period has passed.
	for after := memfdMappings(t, e.sb.VM().Pid()); after != before; after = memfdMappings(t, e.sb.VM().Pid()) {
		select {
		case <-ctx.Done():
			t.Fatalf("QEMU maps %d memfd regions after shrinking, %d before growing", after, before)
		case <-time.After(50 * time.Millisecond):
		}
	}
	c2 := e.container("c2", []string{"sh", "-c", "head -c 20000000 /dev/zero > /big && wc -c < /big && rm /big"}, nil)
	if code, out, errs := e.run(c2, nil); code != 0 || out != "20000000\n" {
		t.Fatalf("after shrinking: exit %d %q %q", code, out, errs)
	}
}

// memfdMappings counts the distinct memfd files QEMU maps (shared guest memory).
func memfdMappings(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "maps"))
	if err != nil {
		t.Fatal(err)
	}
	inodes := map[string]bool{}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 6 && strings.HasPrefix(f[5], "/memfd:") && strings.Contains(f[5], "memory-backend") {
			inodes[f[4]] = true
		}
	}
	return len(inodes)
}

// TestConfigMapUpdate lays out a volume as kubelet lays out a ConfigMap (the key a link
// through "..data" to a timestamped directory) and updates it as kubelet does, by
// replacing the "..data" link atomically: the container sees the new content within
// 10 s (it polls every 50 ms) over 9p and over virtio-fs in its default cache mode, and
// within 5 s in copy mode (the watcher copies the update in), whether copy_sync syncs
// every volume or only Kubernetes ones (then the volume sits where kubelet keeps a
// ConfigMap). With virtio_fs_cache = "always" the guest keeps what it looked up and
// never sees the update: the test records that (docs/shared-fs.md says so).
func TestConfigMapUpdate(t *testing.T) {
	always, never := config.Default(), config.Default()
	always.Hypervisor.VirtioFSCache, never.Hypervisor.VirtioFSCache = "always", "never"
	copyAll, copyKube := config.Default(), config.Default()
	copyAll.Hypervisor.SharedFS, copyKube.Hypervisor.SharedFS = hypervisor.SharedFSNone, hypervisor.SharedFSNone
	copyKube.Hypervisor.CopySync = "kubernetes"
	for _, tc := range []struct {
		name    string
		fs      hypervisor.SharedFS
		eff     *config.Config
		stale   bool
		kubelet bool          // the volume sits where kubelet keeps a ConfigMap
		within  time.Duration // the update is seen this soon (0: the container's 10 s)
	}{
		{"virtio-9p", hypervisor.SharedFS9P, nil, false, false, 0},
		{"virtio-fs", hypervisor.SharedFSVirtioFS, nil, false, false, 0},
		{"virtio-fs cache=never", hypervisor.SharedFSVirtioFS, never, false, false, 0},
		{"virtio-fs cache=always", hypervisor.SharedFSVirtioFS, always, true, false, 0},
		{"copy mode", hypervisor.SharedFSNone, copyAll, false, false, 5 * time.Second},
		{"copy mode copy_sync=kubernetes", hypervisor.SharedFSNone, copyKube, false, true, 5 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnvWith(t, func(c *Config) { c.VM.SharedFS, c.Effective = tc.fs, tc.eff })
			vol := t.TempDir()
			if tc.kubelet {
				vol = kubeletVolumeDir(t, "configmap", "cm") // copy_integration_test.go
			}
			writeConfigMap(t, vol, "..2026_01_01_00_00_00.1", "v1")
			c := e.container("reader", []string{"sh", "-c", `i=0
while [ $i -lt 200 ]; do
  v=$(cat /config/key)
  [ "$v" = v2 ] && { echo saw-v2; exit 0; }
  [ $i = 0 ] && echo "first $v"
  i=$((i+1)); sleep 0.05
done
echo "still $v"; exit 1`}, func(s *specs.Spec) {
				s.Mounts = append(s.Mounts, volume("/config", vol, "rbind", "ro"))
			})
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			out := newOutput() // copy_integration_test.go
			st := c.Attach(ctx, "", IO{Stdout: out})
			defer st.Close()
			if err := c.Start(ctx); err != nil {
				t.Fatal(err)
			}
			out.waitLine(t, "first v1", time.Minute)
			swapped := time.Now()
			writeConfigMap(t, vol, "..2026_01_01_00_00_01.2", "v2")
			code, err := c.Wait(ctx, "")
			if err != nil {
				t.Fatal(err)
			}
			took := time.Since(swapped)
			t.Logf("%s: exit %d %v after the swap", tc.name, code, took)
			_ = st.Wait()
			if tc.stale {
				if code != 1 || !strings.Contains(out.String(), "still v1") {
					t.Fatalf("exit %d, output %q: docs/shared-fs.md says the guest keeps the old content; update it", code, out.String())
				}
				return
			}
			if code != 0 || !strings.Contains(out.String(), "first v1") || !strings.Contains(out.String(), "saw-v2") {
				t.Fatalf("exit %d, output %q: want the update seen within 10 s", code, out.String())
			}
			if tc.within > 0 && took > tc.within {
				t.Fatalf("the update took %v to reach the container, want at most %v", took, tc.within)
			}
		})
	}
}

// writeConfigMap writes a version of a kubelet ConfigMap volume into dir: the data in a
// new timestamped directory, then "..data" replaced atomically (a new link renamed over
// it), and the key a link through "..data".
func writeConfigMap(t *testing.T, dir, version, value string) {
	t.Helper()
	if err := os.Mkdir(filepath.Join(dir, version), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, version, "key"), []byte(value), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(version, filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "key")); os.IsNotExist(err) {
		if err := os.Symlink("..data/key", filepath.Join(dir, "key")); err != nil {
			t.Fatal(err)
		}
	}
}

// TestVirtioFSDaemonFailsToStart: a virtiofsd that refuses its options fails the sandbox's
// creation with the daemon's own message, and nothing is left behind.
func TestVirtioFSDaemonFailsToStart(t *testing.T) {
	g := testutil.RequiresVM(t)
	root, err := os.MkdirTemp("", "vsf")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(root)
	eff := config.Default()
	eff.Hypervisor.VirtioFSExtraArgs = []string{"--no-such-option"}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err = Create(ctx, Config{ID: "sb", Root: root, Effective: eff,
		VM: hypervisor.Config{Kernel: g.Kernel, Initrd: g.Initrd, VCPUs: 1, MemoryMiB: 256, SharedFS: hypervisor.SharedFSVirtioFS}})
	if err == nil || !strings.Contains(err.Error(), "virtiofsd") || !strings.Contains(err.Error(), "--no-such-option") {
		t.Fatalf("create: %v; want virtiofsd's refusal of the option", err)
	}
	assertNoLeftovers(t, root, 0)
	if out, _ := exec.Command("pgrep", "-f", "virtiofsd .*source="+root+"/").Output(); len(out) > 0 {
		t.Errorf("virtiofsd left running: %s", out)
	}
}

// TestAttackAfterRemove: guest root holds a directory of a container's volume open (its
// working directory, reached through the export) while the host removes the container,
// then writes there. Over 9p the host's unmount ends that access (the 9p server works by
// path). Over virtio-fs the daemon works by the descriptors it holds for what the guest
// looked up, and its copies of the mounts are busy and only detached; the sandbox makes
// them read-only in the daemon's namespace first, so the write fails too.
func TestAttackAfterRemove(t *testing.T) {
	for _, tc := range []struct {
		fs      hypervisor.SharedFS
		reaches bool
	}{{hypervisor.SharedFS9P, false}, {hypervisor.SharedFSVirtioFS, false}} {
		t.Run(string(tc.fs), func(t *testing.T) {
			e := newEnvFS(t, tc.fs)
			vol := t.TempDir()
			victim := e.container("victim", []string{"sh", "-c", "ls /vol >/dev/null; exec sleep 600"}, func(s *specs.Spec) {
				s.Mounts = append(s.Mounts, volume("/vol", vol, "rbind", "rw"))
			})
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if err := victim.Start(ctx); err != nil {
				t.Fatal(err)
			}
			script := fmt.Sprintf(`cd %s/containers/victim/mount-* || exit 3
echo in > /tmp/in
while [ ! -e /tmp/go ]; do sleep 0.1; done
echo planted > planted 2>/dev/null && echo wrote; ls >/dev/null 2>&1; true`, guestExport)
			attacker := e.container("attacker", []string{"sh", "-c", script}, privilegedNoPidNS)
			var out bytes.Buffer
			st := attacker.Attach(ctx, "", IO{Stdout: &out})
			defer st.Close()
			if err := attacker.Start(ctx); err != nil {
				t.Fatal(err)
			}
			testutil.WaitFor(t, "the attacker to hold the volume", func() bool {
				_, err := os.Stat(filepath.Join(attacker.rootfs, "tmp/in"))
				return err == nil
			})
			if err := victim.Kill(ctx, "", syscall.SIGKILL, false); err != nil {
				t.Fatal(err)
			}
			if _, err := victim.Wait(ctx, ""); err != nil {
				t.Fatal(err)
			}
			if err := e.sb.DeleteContainer(ctx, "victim"); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(attacker.rootfs, "tmp/go"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := attacker.Wait(ctx, ""); err != nil {
				t.Fatal(err)
			}
			_ = st.Wait()
			_, err := os.Stat(filepath.Join(vol, "planted"))
			reached := err == nil
			t.Logf("%s: guest root wrote the removed container's volume: %v (attacker said %q)", tc.fs, reached, out.String())
			if reached != tc.reaches {
				t.Errorf("%s: guest root reached the removed container's volume: %v, docs/security.md says %v; update it", tc.fs, reached, tc.reaches)
			}
		})
	}
}

// TestChownHostDeviceNode is guest root's attempt, over 9p and virtio-fs, to hand a host
// device node bound into its container (as a /dev/null bind masks a path) to another
// user: chown and chmod of the node fail, and the host's node keeps its owner and mode.
func TestChownHostDeviceNode(t *testing.T) {
	for _, fs := range []hypervisor.SharedFS{hypervisor.SharedFS9P, hypervisor.SharedFSVirtioFS} {
		t.Run(string(fs), func(t *testing.T) {
			e := newEnvFS(t, fs)
			node := filepath.Join(t.TempDir(), "null")
			if err := syscall.Mknod(node, syscall.S_IFCHR|0o666, 1<<8|3); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(node, 0o666); err != nil {
				t.Fatal(err)
			}
			c := e.container("attacker", []string{"sh", "-c",
				"chown 65534:65534 /mnt/null && echo chown-ok; chmod 600 /mnt/null && echo chmod-ok; echo x > /mnt/null && echo write-ok"},
				func(s *specs.Spec) {
					privilegedNoPidNS(s)
					s.Mounts = append(s.Mounts, specs.Mount{Destination: "/mnt/null", Type: "bind", Source: node, Options: []string{"rbind", "rw"}})
				})
			_, out, errs := e.run(c, nil)
			var st syscall.Stat_t
			if err := syscall.Stat(node, &st); err != nil {
				t.Fatal(err)
			}
			if st.Uid != 0 || st.Gid != 0 || st.Mode&0o777 != 0o666 {
				t.Errorf("host node after the guest's attempts: uid %d gid %d mode %o, want 0 0 666 (%s%s)", st.Uid, st.Gid, st.Mode&0o777, out, errs)
			}
			if strings.Contains(out, "chown-ok") || strings.Contains(out, "chmod-ok") {
				t.Errorf("guest saw chown or chmod succeed: %s", out)
			}
			if !strings.Contains(out, "write-ok") {
				t.Errorf("the container cannot use the device: %s%s", out, errs)
			}
		})
	}
}
