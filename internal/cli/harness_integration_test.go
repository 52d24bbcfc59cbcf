package cli_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/vessel-containers/vessel/internal/bundle"
	"github.com/vessel-containers/vessel/internal/sharefs"
	"github.com/vessel-containers/vessel/internal/testutil"
)

// binaries builds vessel and the shim once per test run into one directory, where vessel
// finds the shim next to itself.
type binaries struct {
	once sync.Once
	dir  string
	err  error
}

func (b *binaries) build(t *testing.T) string {
	t.Helper()
	b.once.Do(func() {
		if b.dir, b.err = os.MkdirTemp("", "vbin"); b.err != nil {
			return
		}
		for bin, pkg := range map[string]string{"vessel": "./cmd/vessel", "containerd-shim-vessel-v2": "./cmd/containerd-shim-vessel-v2"} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(b.dir, bin), pkg)
			cmd.Dir = testutil.RepoRoot(t)
			if out, err := cmd.CombinedOutput(); err != nil {
				b.err = fmt.Errorf("build %s: %w\n%s", bin, err, out)
				return
			}
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return filepath.Join(b.dir, "vessel")
}

func (b *binaries) remove() {
	if b.dir != "" {
		os.RemoveAll(b.dir)
	}
}

var built binaries

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == vethHookArg {
		os.Exit(vethHook(os.Args[2:])) // network_integration_test.go
	}
	code := m.Run()
	built.remove()
	os.Exit(code)
}

// buildVessel returns the vessel binary, with the shim next to it.
func buildVessel(t *testing.T) string { return built.build(t) }

// harness runs the vessel CLI with a private --root, a configuration pointing at the
// test guest image, and a log file; at cleanup it asserts that nothing is left behind.
type harness struct {
	t    *testing.T
	bin  string
	root string
	cfg  string
	log  string
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	return newHarnessConfig(t, "")
}

// newHarnessConfig is newHarness with extra TOML in the [hypervisor] section.
func newHarnessConfig(t *testing.T, extra string) *harness {
	t.Helper()
	return newHarnessGuest(t, testutil.RequiresVM(t), extra)
}

// newHarnessGuest is newHarnessConfig booting guest g.
func newHarnessGuest(t *testing.T, g testutil.Guest, extra string) *harness {
	t.Helper()
	h := &harness{t: t, bin: buildVessel(t)}
	tmp := t.TempDir()
	h.cfg = filepath.Join(tmp, "configuration.toml")
	if err := os.WriteFile(h.cfg, g.Config(extra), 0o644); err != nil {
		t.Fatal(err)
	}
	h.log = filepath.Join(tmp, "vessel.log")
	// Short: shim sockets live under the root and unix socket paths are limited.
	root, err := os.MkdirTemp("", "vcli")
	if err != nil {
		t.Fatal(err)
	}
	// Searchable, as the default state root is made (the jailed VMM and virtiofsd get
	// their paths as clones and need no access: TestJailedBelowClosedDir).
	if err := os.Chmod(root, 0o711); err != nil {
		t.Fatal(err)
	}
	h.root = root
	t.Cleanup(func() {
		h.cleanup()
		os.RemoveAll(root)
	})
	return h
}

// cmd prepares a vessel command with the harness's global flags.
func (h *harness) cmd(args ...string) *exec.Cmd {
	return exec.Command(h.bin, append([]string{"--root", h.root, "--config", h.cfg, "--log", h.log, "--debug"}, args...)...)
}

// run runs vessel and returns its stdout, stderr and exit code.
func (h *harness) run(args ...string) (string, string, int) {
	h.t.Helper()
	return h.runCmd(h.cmd(args...))
}

// runCmd runs a vessel command. Its output goes to files, not pipes: a detached
// container's stand-in inherits vessel's stdio and keeps it open after vessel exits (as
// under conmon), and a pipe would keep Wait waiting for it.
func (h *harness) runCmd(cmd *exec.Cmd) (string, string, int) {
	h.t.Helper()
	dir := h.t.TempDir()
	stdout, err := os.Create(filepath.Join(dir, "stdout"))
	if err != nil {
		h.t.Fatal(err)
	}
	defer stdout.Close()
	stderr, err := os.Create(filepath.Join(dir, "stderr"))
	if err != nil {
		h.t.Fatal(err)
	}
	defer stderr.Close()
	if cmd.Stdout == nil {
		cmd.Stdout = stdout
	}
	cmd.Stderr = stderr
	err = cmd.Run()
	var ee *exec.ExitError
	code := 0
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		h.t.Fatalf("%v: %v", cmd.Args, err)
	}
	out, _ := os.ReadFile(stdout.Name())
	errOut, _ := os.ReadFile(stderr.Name())
	return string(out), string(errOut), code
}

// ok runs vessel and fails the test unless it succeeds.
func (h *harness) ok(args ...string) string {
	h.t.Helper()
	out, errOut, code := h.run(args...)
	if code != 0 {
		h.t.Fatalf("vessel %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	return out
}

// state returns `vessel state id` decoded.
func (h *harness) state(id string) specs.State {
	h.t.Helper()
	var st specs.State
	if err := json.Unmarshal([]byte(h.ok("state", id)), &st); err != nil {
		h.t.Fatalf("state %s: %v", id, err)
	}
	return st
}

// wantState checks the container's status and that its pid is (or is not) reported.
func (h *harness) wantState(id string, status specs.ContainerState) specs.State {
	h.t.Helper()
	st := h.state(id)
	if st.Status != status {
		h.t.Fatalf("state of %s: %s, want %s", id, st.Status, status)
	}
	if hasPid := st.Pid > 0; hasPid == (status == specs.StateStopped) {
		h.t.Errorf("state of %s (%s) reports pid %d", id, status, st.Pid)
	}
	return st
}

// bundle makes a busybox bundle running args; edit may change its spec.
func (h *harness) bundle(args []string, edit func(*specs.Spec)) string {
	h.t.Helper()
	dir := filepath.Join(h.t.TempDir(), "bundle")
	if err := os.Mkdir(dir, 0o755); err != nil {
		h.t.Fatal(err)
	}
	spec, err := bundle.CreateBusybox(dir, args, false)
	if err != nil {
		h.t.Fatal(err)
	}
	if edit != nil {
		edit(spec)
		if err := bundle.WriteSpec(dir, spec); err != nil {
			h.t.Fatal(err)
		}
	}
	return dir
}

// created creates container id from bundle b and returns its pid and remove, which
// force-deletes it and reaps its stand-in. remove runs at the end of the test unless the
// test called it first.
func (h *harness) created(b, id string) (pid int, remove func()) {
	h.t.Helper()
	pidFile := filepath.Join(h.t.TempDir(), "pid")
	h.ok("create", "--bundle", b, "--pid-file", pidFile, id)
	pid = readPid(h.t, pidFile)
	var once sync.Once
	remove = func() {
		once.Do(func() {
			h.ok("delete", "--force", id)
			reap(h.t, pid)
		})
	}
	h.t.Cleanup(remove)
	return pid, remove
}

// subreaper makes the test process the subreaper of the processes vessel leaves behind,
// as conmon is: the stand-in processes become its children, and it can collect their exit
// status. The cleanup reaps every child left and ends the role.
func (h *harness) subreaper() {
	h.t.Helper()
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() {
		_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
		for {
			var ws unix.WaitStatus
			pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if pid <= 0 || err != nil {
				return
			}
		}
	})
}

// reap waits for a child (with the test process as subreaper) and returns its exit code.
func reap(t *testing.T, pid int) int {
	t.Helper()
	done := make(chan struct{})
	var ws unix.WaitStatus
	var err error
	go func() {
		defer close(done)
		for {
			_, err = unix.Wait4(pid, &ws, 0, nil)
			if !errors.Is(err, unix.EINTR) {
				return
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("process %d did not exit", pid)
	}
	if err != nil {
		t.Fatalf("wait for %d: %v", pid, err)
	}
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

func readPid(t *testing.T, path string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatalf("pid file %s: %q", path, data)
	}
	return pid
}

func processExists(pid int) bool {
	return syscall.Kill(pid, 0) == nil
}

// cleanup removes containers a failed test left, then asserts that no process, mount,
// socket or state is left under the root.
func (h *harness) cleanup() {
	t := h.t
	if ids := strings.Fields(func() string { out, _, _ := h.run("list", "-q"); return out }()); len(ids) > 0 {
		if !t.Failed() {
			t.Errorf("containers left: %v", ids)
		}
		for _, id := range ids {
			h.run("delete", "--force", id)
		}
	}
	if t.Failed() {
		if data, err := os.ReadFile(h.log); err == nil {
			t.Logf("vessel log:\n%s", tail(string(data), 200))
		}
	}
	h.assertNoLeftovers()
}

func (h *harness) assertNoLeftovers() {
	t := h.t
	out, _ := exec.Command("pgrep", "-af", h.root).Output()
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line != "" && !strings.Contains(line, "pgrep") {
			t.Errorf("process left behind: %s", line)
		}
	}
	if m, _ := sharefs.MountsUnder(h.root); len(m) > 0 {
		t.Errorf("mounts left: %v", m)
	}
	for _, d := range []string{"containers", "sandboxes", "bundles", "s"} {
		if entries, _ := os.ReadDir(filepath.Join(h.root, d)); len(entries) > 0 {
			t.Errorf("left in %s: %v", d, entries)
		}
	}
	if l := testutil.VMMIDLeasesUnder(h.root); len(l) > 0 {
		t.Errorf("vmm id leases left: %q", l)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
