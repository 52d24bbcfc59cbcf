package shim_test

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vessel-containers/vessel/internal/testutil"
)

// TestDebugExecUnderContainerd reaches the guest of a sandbox containerd's shim runs with
// `vessel debug exec --sandbox-root`: the CLI goes through the shim's debug.sock, and the
// shim's own connection to the agent keeps serving the task (an exec before and after).
func TestDebugExecUnderContainerd(t *testing.T) {
	h := newHarnessGuest(t, testutil.RequiresDebugGuest(t), "[agent]\ndebug_console_enabled = true\n")
	events := h.ctd.Events(t)
	h.start("box", nil, "sleep", "1000")
	waitEvent(t, events, "/tasks/start", `"box"`)
	vessel := filepath.Join(t.TempDir(), "vessel")
	build := exec.Command("go", "build", "-o", vessel, "./cmd/vessel")
	build.Dir = testutil.RepoRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build vessel: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(h.ctr("task", "exec", "--exec-id", "before", "box", "echo", "in-box")); got != "in-box" {
		t.Errorf("task exec before: %q", got)
	}
	ctx, cancel := h.ctx()
	defer cancel()
	out, err := exec.CommandContext(ctx, vessel, "debug", "exec", "--sandbox-root", h.sbRoot, "box", "--",
		"sh", "-c", "echo pid1=$(cat /proc/1/comm); ps -o args | grep '^sleep 1000'").CombinedOutput()
	if err != nil {
		t.Fatalf("vessel debug exec: %v\n%s", err, out)
	}
	// The guest's root sees its agent as PID 1 and the container's process.
	if !strings.Contains(string(out), "pid1=init\n") || !strings.Contains(string(out), "sleep 1000") {
		t.Errorf("vessel debug exec: %q, want the guest's PID 1 and the container's sleep", out)
	}
	if got := strings.TrimSpace(h.ctr("task", "exec", "--exec-id", "after", "box", "echo", "in-box")); got != "in-box" {
		t.Errorf("task exec after: %q", got)
	}
}
