package cli_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vessel-containers/vessel/internal/sharefs"
	"github.com/vessel-containers/vessel/internal/testutil"
)

// podman runs Debian's podman with vessel as its OCI runtime, in private storage.
//
// What works on this host (cgroup v1/v2 hybrid, no CAP_SYS_RESOURCE): the cgroupfs cgroup
// manager (there is no systemd session), the file events backend (no journald), overlay
// storage under a temporary --root/--runroot, and --network none (the guest has no
// networking yet; podman's bridge needs netavark or CNI plugins). podman's rlimits
// (RLIMIT_NOFILE 1048576) fail under runc here, but vessel applies them in the guest.
//
// vessel's flags are baked into a wrapper script given as --runtime: podman passes
// --runtime-flag to create, start and kill, but not to the `delete --force` its cleanup
// process (run by conmon) executes, nor to `state`, so --root and --config must come
// with the runtime path itself.
type podman struct {
	t    *testing.T
	h    *harness
	dir  string
	args []string
	env  []string
}

func newPodman(t *testing.T, h *harness) *podman {
	t.Helper()
	bin, err := exec.LookPath("podman")
	if err != nil {
		if testutil.InCI() {
			t.Fatalf("CI prerequisite missing: podman (apt-get install podman): %v", err)
		}
		t.Skipf("podman not installed (apt-get install podman): %v", err)
	}
	dir, err := os.MkdirTemp("", "vpod")
	if err != nil {
		t.Fatal(err)
	}
	runtime := filepath.Join(dir, "vessel-runtime")
	script := fmt.Sprintf("#!/bin/sh\nexec %s --root %s --config %s --log %s \"$@\"\n", h.bin, h.root, h.cfg, h.log)
	files := map[string]string{
		runtime:                               script,
		filepath.Join(dir, "containers.conf"): "[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n",
		filepath.Join(dir, "storage.conf"): fmt.Sprintf("[storage]\ndriver = \"overlay\"\nrunroot = %q\ngraphroot = %q\n",
			filepath.Join(dir, "run"), filepath.Join(dir, "graph")),
	}
	for path, content := range files {
		if err := os.WriteFile(path, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	p := &podman{
		t: t, h: h, dir: dir,
		args: []string{
			bin, "--root", filepath.Join(dir, "graph"), "--runroot", filepath.Join(dir, "run"), "--tmpdir", filepath.Join(dir, "tmp"),
			"--cgroup-manager", "cgroupfs", "--events-backend", "file", "--runtime", runtime,
		},
		env: append(os.Environ(), "CONTAINERS_CONF="+filepath.Join(dir, "containers.conf"), "CONTAINERS_STORAGE_CONF="+filepath.Join(dir, "storage.conf")),
	}
	t.Cleanup(p.cleanup)
	return p
}

// run runs podman and returns its combined output and exit code.
func (p *podman) run(args ...string) (string, int) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, p.args[0], append(p.args[1:], args...)...)
	cmd.Env = p.env
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok { //nolint:errorlint // exec errors are not wrapped
		return string(out), ee.ExitCode()
	}
	if err != nil {
		p.t.Fatalf("podman %s: %v", strings.Join(args, " "), err)
	}
	return string(out), 0
}

func (p *podman) ok(args ...string) string {
	p.t.Helper()
	out, code := p.run(args...)
	if code != 0 {
		p.t.Fatalf("podman %s: exit %d: %s", strings.Join(args, " "), code, out)
	}
	return out
}

// cleanup removes every container, image and mount of the private storage, then checks
// that podman left no conmon behind.
func (p *podman) cleanup() {
	// Not `system reset`: it would also touch the host's network configuration.
	p.run("rm", "--all", "--force")
	p.run("rmi", "--all", "--force")
	if m, _ := sharefs.MountsUnder(p.dir); len(m) > 0 {
		for i := len(m) - 1; i >= 0; i-- {
			_ = syscall.Unmount(m[i], syscall.MNT_DETACH)
		}
		p.t.Errorf("podman mounts left: %v", m)
	}
	out, _ := exec.Command("pgrep", "-af", "conmon.*"+p.dir).Output()
	if s := strings.TrimSpace(string(out)); s != "" {
		p.t.Errorf("conmon left behind: %s", s)
	}
	os.RemoveAll(p.dir)
}

// TestPodman runs podman with vessel as its runtime on a locally built image: run with
// output and exit codes, stdin, a terminal, exec, logs, stop and kill.
func TestPodman(t *testing.T) {
	h := newHarness(t)
	p := newPodman(t, h)
	p.ok("load", "-i", testutil.BuildBusyboxImage(t))
	img := testutil.BusyboxImageRef
	run := []string{"run", "--network", "none"}

	if out := p.ok(append(run, "--rm", img, "echo", "hi")...); out != "hi\n" {
		t.Errorf("podman run echo hi: %q", out)
	}
	if _, code := p.run(append(run, "--rm", img, "sh", "-c", "exit 7")...); code != 7 {
		t.Errorf("exit code: %d, want 7", code)
	}
	t.Run("stdin", func(t *testing.T) {
		cmd := exec.Command(p.args[0], append(p.args[1:], append(run, "--rm", "-i", img, "tr", "a-z", "A-Z")...)...)
		cmd.Env = p.env
		cmd.Stdin = strings.NewReader("shout\n")
		if out, err := cmd.Output(); err != nil || string(out) != "SHOUT\n" {
			t.Errorf("podman run -i: %q %v", out, err)
		}
	})
	t.Run("terminal", func(t *testing.T) {
		out, code := p.run(append(run, "--rm", "-t", img, "sh", "-c", "tty; exit 3")...)
		if code != 3 || !strings.Contains(out, "/dev/pts/") {
			t.Errorf("podman run -t: %q exit %d", out, code)
		}
	})

	p.ok(append(run, "-d", "--name", "p1", img, "sh", "-c", "trap 'echo got-term; exit 42' TERM; echo up; while true; do usleep 100000; done")...)
	testutil.WaitFor(t, "p1's output", func() bool { out, _ := p.run("logs", "p1"); return strings.Contains(out, "up") })
	if out, code := p.run("exec", "p1", "sh", "-c", "echo exec-out; exit 5"); code != 5 || out != "exec-out\n" {
		t.Errorf("podman exec: %q exit %d, want \"exec-out\" 5", out, code)
	}
	if out := p.ok("exec", "-t", "p1", "tty"); !strings.Contains(out, "/dev/pts/") {
		t.Errorf("podman exec -t: %q", out)
	}
	if out := p.ok("ps", "--format", "{{.Names}} {{.Status}}"); !strings.Contains(out, "p1 Up") {
		t.Errorf("podman ps: %q", out)
	}
	p.ok("stop", "-t", "30", "p1")
	if out := p.ok("inspect", "p1", "--format", "{{.State.ExitCode}} {{.State.Status}}"); strings.TrimSpace(out) != "42 exited" {
		t.Errorf("after stop: %q, want \"42 exited\"", out)
	}
	if out := p.ok("logs", "p1"); out != "up\ngot-term\n" {
		t.Errorf("podman logs: %q", out)
	}
	p.ok("rm", "p1")

	p.ok(append(run, "-d", "--name", "p2", img, "sleep", "1000")...)
	p.ok("kill", "p2")
	testutil.WaitFor(t, "p2 to exit", func() bool {
		out, _ := p.run("inspect", "p2", "--format", "{{.State.Status}}")
		return strings.TrimSpace(out) == "exited"
	})
	if out := p.ok("inspect", "p2", "--format", "{{.State.ExitCode}}"); strings.TrimSpace(out) != "137" {
		t.Errorf("exit code after kill: %q, want 137", out)
	}
	p.ok("rm", "p2")
	// The harness's cleanup asserts that vessel left nothing behind; podman's that conmon did not.
}
