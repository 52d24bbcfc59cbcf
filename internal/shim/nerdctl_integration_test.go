package shim_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/vessel-containers/vessel/internal/testutil"
)

// nerdctl runs the nerdctl binary against a harness's containerd, with its own data root.
type nerdctl struct {
	t        *testing.T
	h        *harness
	bin      string
	dataRoot string
}

func newNerdctl(t *testing.T, h *harness) *nerdctl {
	t.Helper()
	bin := testutil.RequiresTool(t, "nerdctl")
	dataRoot, err := os.MkdirTemp("", "vnd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dataRoot) })
	return &nerdctl{t: t, h: h, bin: bin, dataRoot: dataRoot}
}

// run runs nerdctl with args and returns its stdout and stderr, and the error.
func (n *nerdctl) run(args ...string) (string, string, error) {
	n.t.Helper()
	ctx, cancel := n.h.ctx()
	defer cancel()
	full := append([]string{"--address", n.h.ctd.Address, "--namespace", "vessel-test", "--data-root", n.dataRoot, "--cgroup-manager", "cgroupfs"}, args...)
	cmd := exec.CommandContext(ctx, n.bin, full...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// must runs nerdctl and fails the test when it fails.
func (n *nerdctl) must(args ...string) string {
	n.t.Helper()
	out, errOut, err := n.run(args...)
	if err != nil {
		n.t.Fatalf("nerdctl %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// loggers lists the logging binaries nerdctl's log driver runs for this data root.
func (n *nerdctl) loggers() string {
	out, _ := exec.Command("pgrep", "-af", "_NERDCTL_INTERNAL_LOGGING").Output()
	var mine []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, n.dataRoot) {
			mine = append(mine, line)
		}
	}
	return strings.Join(mine, "\n")
}

// TestNerdctl runs a detached container with nerdctl as a user would: its log driver is a
// binary:// stdio URI, then logs, exec, pause and unpause, stop and rm.
func TestNerdctl(t *testing.T) {
	h := newHarness(t)
	n := newNerdctl(t, h)
	const name = "vnerd"
	n.must("run", "-d", "--runtime", runtimeName, "--network", "none", "--name", name, testutil.BusyboxImageRef,
		"sh", "-c", "trap 'exit 0' TERM; echo hello; echo oops >&2; while :; do sleep 1; done")
	t.Cleanup(func() {
		if _, errOut, err := n.run("rm", "-f", name); err != nil && !strings.Contains(errOut, "no such container") {
			t.Logf("nerdctl rm -f: %v: %s", err, errOut)
		}
	})
	if n.loggers() == "" {
		t.Error("no logging binary runs for the container")
	}

	// The log driver writes what the logging binary received; nothing signals its arrival.
	var out, errOut string
	testutil.WaitFor(t, "the container's output in nerdctl logs", func() bool {
		var err error
		out, errOut, err = n.run("logs", name)
		return err == nil && strings.Contains(out, "hello") && strings.Contains(errOut, "oops")
	})
	if out != "hello\n" || errOut != "oops\n" {
		t.Errorf("nerdctl logs: stdout %q, stderr %q; want \"hello\\n\", \"oops\\n\"", out, errOut)
	}

	if got := n.must("exec", name, "echo", "exec-ok"); got != "exec-ok\n" {
		t.Errorf("nerdctl exec: got %q", got)
	}

	n.must("pause", name)
	if got := n.must("inspect", "--format", "{{.State.Status}}", name); strings.TrimSpace(got) != "paused" {
		t.Errorf("after pause: status %q", got)
	}
	n.must("unpause", name)
	if got := n.must("exec", name, "echo", "after-unpause"); got != "after-unpause\n" {
		t.Errorf("nerdctl exec after unpause: got %q", got)
	}

	n.must("stop", name)
	if got := n.must("inspect", "--format", "{{.State.Status}}", name); strings.TrimSpace(got) != "exited" {
		t.Errorf("after stop: status %q", got)
	}
	if l := n.loggers(); l != "" {
		t.Errorf("logging binary still runs after the task ended:\n%s", l)
	}
	n.must("rm", name)
	if _, _, err := n.run("inspect", name); err == nil {
		t.Error("the container is still there after rm")
	}
}
