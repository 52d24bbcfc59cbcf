package cli_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vessel-containers/vessel/internal/testutil"
)

// rootlessUser is the unprivileged user hack/install-deps.sh makes for the rootless tests.
const rootlessUser = "vessel-rootless"

// rootlessPodman runs podman as rootlessUser, with vessel as its OCI runtime: podman makes
// its user namespace (the user as uid 0 of it) and calls vessel there, so vessel runs in
// rootless mode. Everything the user reads lives in one directory it can reach: vessel and
// the shim, the guest image, the configurations; its HOME (podman's storage) and its
// XDG_RUNTIME_DIR (podman's and vessel's state) are private to the test.
type rootlessPodman struct {
	t        *testing.T
	uid, gid uint32
	dir      string
	home     string
	xdg      string
	log      string
}

func newRootlessPodman(t *testing.T) *rootlessPodman {
	t.Helper()
	g := testutil.RequiresVM(t)
	if _, err := exec.LookPath("podman"); err != nil {
		t.Skipf("podman not installed (apt-get install podman): %v", err)
	}
	u, err := user.Lookup(rootlessUser)
	if err != nil {
		t.Skipf("user %s does not exist (hack/install-deps.sh makes it): %v", rootlessUser, err)
	}
	if hasSubIDs(rootlessUser) {
		if _, err := exec.LookPath("newuidmap"); err != nil {
			t.Skipf("%s has /etc/subuid entries but newuidmap is missing (apt-get install uidmap; hack/install-deps.sh): %v", rootlessUser, err)
		}
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	p := &rootlessPodman{t: t, uid: uint32(uid), gid: uint32(gid)}
	if p.dir, err = os.MkdirTemp("", "vrl"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.cleanup)
	if err := os.Chmod(p.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Dir(buildVessel(t))
	for _, f := range []struct{ from, to string }{
		{filepath.Join(bin, "vessel"), "vessel"},
		{filepath.Join(bin, "containerd-shim-vessel-v2"), "containerd-shim-vessel-v2"},
		{g.Kernel, "vmlinux"},
		{g.Initrd, "initrd.img"},
		{testutil.BuildBusyboxImage(t), "busybox.tar"},
	} {
		copyFile(t, f.from, filepath.Join(p.dir, f.to))
	}
	p.home, p.xdg = filepath.Join(p.dir, "home"), filepath.Join(p.dir, "xdg")
	p.log = filepath.Join(p.dir, "vessel.log")
	conf := filepath.Join(p.home, ".config", "containers")
	p.own(p.home, p.xdg, filepath.Join(p.home, ".config"), conf)
	p.write(filepath.Join(conf, "containers.conf"), "[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n", 0o644)
	p.write(filepath.Join(conf, "storage.conf"), "[storage]\ndriver = \"vfs\"\n", 0o644)
	p.write(p.log, "", 0o644)
	return p
}

// hasSubIDs reports whether /etc/subuid gives name a range (podman then needs newuidmap).
func hasSubIDs(name string) bool {
	f, err := os.Open("/etc/subuid")
	if err != nil {
		return false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if strings.HasPrefix(s.Text(), name+":") {
			return true
		}
	}
	return false
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// own makes directories owned by the user, private to it.
func (p *rootlessPodman) own(dirs ...string) {
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o700); err != nil {
			p.t.Fatal(err)
		}
		if err := os.Chown(d, int(p.uid), int(p.gid)); err != nil {
			p.t.Fatal(err)
		}
	}
}

// write writes a file the user owns.
func (p *rootlessPodman) write(path, content string, perm os.FileMode) {
	if err := os.WriteFile(path, []byte(content), perm); err != nil {
		p.t.Fatal(err)
	}
	if err := os.Chown(path, int(p.uid), int(p.gid)); err != nil {
		p.t.Fatal(err)
	}
}

// runtime writes a vessel wrapper with configuration hypervisorTOML, for podman's
// --runtime. It gives no --root: vessel picks $XDG_RUNTIME_DIR/vessel itself.
func (p *rootlessPodman) runtime(name, hypervisorTOML string) string {
	cfg := filepath.Join(p.dir, name+".toml")
	p.write(cfg, fmt.Sprintf("[hypervisor]\nkernel = %q\ninitrd = %q\n%s", filepath.Join(p.dir, "vmlinux"), filepath.Join(p.dir, "initrd.img"), hypervisorTOML), 0o644)
	script := filepath.Join(p.dir, name)
	p.write(script, fmt.Sprintf("#!/bin/sh\nexec %s --config %s --log %s \"$@\"\n", filepath.Join(p.dir, "vessel"), cfg, p.log), 0o755)
	return script
}

// run runs podman as the user and returns its combined output and exit code.
func (p *rootlessPodman) run(args ...string) (string, int) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "podman", append([]string{"--cgroup-manager", "cgroupfs", "--events-backend", "file"}, args...)...)
	cmd.Dir = p.home
	cmd.Env = []string{"HOME=" + p.home, "USER=" + rootlessUser, "XDG_RUNTIME_DIR=" + p.xdg, "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: p.uid, Gid: p.gid, Groups: []uint32{}}}
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok { //nolint:errorlint // exec errors are not wrapped
		return string(out), ee.ExitCode()
	}
	if err != nil {
		p.t.Fatalf("podman %s: %v", strings.Join(args, " "), err)
	}
	return string(out), 0
}

func (p *rootlessPodman) ok(args ...string) string {
	p.t.Helper()
	out, code := p.run(args...)
	if code != 0 {
		p.t.Fatalf("podman %s: exit %d: %s", strings.Join(args, " "), code, out)
	}
	return out
}

// pausePid is podman's pause process, which holds the user's namespace between commands.
func (p *rootlessPodman) pausePid() int {
	b, err := os.ReadFile(filepath.Join(p.xdg, "libpod", "tmp", "pause.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// userProcesses lists the user's processes (pid and command line) but podman's pause process.
func (p *rootlessPodman) userProcesses() []string {
	entries, _ := os.ReadDir("/proc")
	pause := p.pausePid()
	var found []string
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == pause {
			continue
		}
		if uid, ok := procUID(pid); ok && uid == p.uid {
			cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
			found = append(found, fmt.Sprintf("%d %s", pid, strings.ReplaceAll(string(cmdline), "\x00", " ")))
		}
	}
	return found
}

// procUID is the real uid of pid; ok is false when every one of its uids (real,
// effective, saved, file system) is not that one.
func procUID(pid int) (uint32, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 5 && f[0] == "Uid:" {
			if f[1] != f[2] || f[1] != f[3] || f[1] != f[4] {
				return 0, false
			}
			uid, err := strconv.ParseUint(f[1], 10, 32)
			return uint32(uid), err == nil
		}
	}
	return 0, false
}

// cleanup removes the user's containers and images, ends podman's pause process, asserts
// that nothing of the user's runs and that vessel left no state, and removes the directory.
func (p *rootlessPodman) cleanup() {
	t := p.t
	if p.home != "" {
		p.run("rm", "--all", "--force")
		p.run("rmi", "--all", "--force")
		if pid := p.pausePid(); pid > 0 {
			if err := syscall.Kill(pid, syscall.SIGKILL); err == nil {
				testutil.WaitFor(t, "podman's pause process to exit", func() bool { return !processExists(pid) })
			}
		}
		testutil.WaitFor(t, "the user's processes to exit", func() bool { return len(p.userProcesses()) == 0 })
		for _, d := range []string{"containers", "sandboxes", "s"} {
			if entries, _ := os.ReadDir(filepath.Join(p.xdg, "vessel", d)); len(entries) > 0 {
				t.Errorf("left in $XDG_RUNTIME_DIR/vessel/%s: %v", d, entries)
			}
		}
		if t.Failed() {
			if data, err := os.ReadFile(p.log); err == nil {
				t.Logf("vessel log:\n%s", tail(string(data), 100))
			}
		}
	}
	os.RemoveAll(p.dir)
}

// TestRootlessPodman runs `podman run` as an unprivileged user with vessel as its runtime:
// the container's output comes back, QEMU runs as that user (software emulation when the
// user cannot open /dev/kvm), vessel's state is under the user's XDG_RUNTIME_DIR and nothing
// is left behind; hypervisor.vmm_id_range is not applied rootless, and virtio-fs is refused
// with Vessel's error naming it.
func TestRootlessPodman(t *testing.T) {
	p := newRootlessPodman(t)
	rt := p.runtime("vessel-runtime", "")
	p.ok("load", "-i", filepath.Join(p.dir, "busybox.tar"))
	img := testutil.BusyboxImageRef

	out := p.ok("--runtime", rt, "run", "--rm", "--network", "none", img, "echo", "hi")
	t.Logf("podman run --rm %s echo hi, as %s: %q", img, rootlessUser, out)
	if out != "hi\n" {
		t.Errorf("podman run echo hi: %q, want \"hi\\n\"", out)
	}

	t.Run("qemu runs as the user", func(t *testing.T) {
		p.ok("--runtime", rt, "run", "-d", "--name", "r1", "--network", "none", img, "sleep", "1000")
		var qemu []string
		for _, proc := range p.userProcesses() {
			if strings.Contains(proc, "qemu-system") {
				qemu = append(qemu, proc)
			}
		}
		if len(qemu) != 1 {
			t.Errorf("QEMU processes running as uid %d (real, effective, saved and fs): %q, want one", p.uid, qemu)
		} else {
			t.Logf("QEMU as uid %d: %.200s", p.uid, qemu[0])
		}
		if entries, _ := os.ReadDir(filepath.Join(p.xdg, "vessel", "sandboxes")); len(entries) != 1 {
			t.Errorf("sandboxes in $XDG_RUNTIME_DIR/vessel: %v, want one", entries)
		}
		if out := p.ok("exec", "r1", "cat", "/proc/self/status"); !strings.Contains(out, "Uid:\t0\t0\t0\t0") {
			t.Errorf("exec in r1: %q, want uid 0 in the container", out)
		}
		p.ok("rm", "--force", "r1")
	})

	t.Run("vmm_id_range not applied", func(t *testing.T) {
		rt := p.runtime("vessel-jail", "vmm_id_range = \"300000-365535\"\n")
		if out := p.ok("--runtime", rt, "run", "--rm", "--network", "none", img, "echo", "jail"); out != "jail\n" {
			t.Errorf("podman run with vmm_id_range: %q", out)
		}
	})

	t.Run("virtio-fs refused", func(t *testing.T) {
		rt := p.runtime("vessel-virtiofs", "shared_fs = \"virtio-fs\"\n")
		out, code := p.run("--runtime", rt, "run", "--rm", "--network", "none", img, "echo", "hi")
		want := `hypervisor.shared_fs = "virtio-fs" cannot be used rootless: virtiofsd (Debian 12's) needs root on the host; use "virtio-9p"`
		if code == 0 || !strings.Contains(out, want) {
			t.Errorf("podman run with virtio-fs: exit %d: %q, want an error containing %q", code, out, want)
		}
		t.Logf("virtio-fs, rootless: %s", strings.TrimSpace(out))
	})
}
