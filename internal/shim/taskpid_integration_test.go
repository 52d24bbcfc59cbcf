package shim_test

import (
	"errors"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vessel-containers/vessel/internal/taskpid"
	"github.com/vessel-containers/vessel/internal/testutil"
)

// TestTaskPidStandsForTheTask: the task's pid (`ctr task ls`) is a host process of its own,
// not the shim, listed among the task's processes (`ctr task ps`) beside the guest's other
// processes, in the sandbox's host cgroup, and gone by the time the task's exit is published, as a runc task's pid is;
// an exec's pid likewise. The harness checks no stand-in is left once the task is deleted.
func TestTaskPidStandsForTheTask(t *testing.T) {
	h := newHarness(t)
	events := h.ctd.Events(t)
	h.start("box", nil, "sh", "-c", "while true; do sleep 1; done")
	waitEvent(t, events, "/tasks/start", `"box"`)
	pid := h.taskPid("box")
	if shim := h.shimPid("box"); pid == shim {
		t.Fatalf("the task's pid %d is the shim's", pid)
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		t.Fatalf("task pid %d: %v", pid, err)
	}
	if want := taskpid.Argv0 + "\x00box\x00"; string(cmdline) != want {
		t.Errorf("task pid %d runs %q, want %q", pid, cmdline, want)
	}
	// In the sandbox's host cgroup, with the VM: ctr's cgroupsPath /<namespace>/<id>.
	if got, want := testutil.MemoryCgroup(t, pid), "/vessel-test/box"; got != want {
		t.Errorf("task pid %d is in cgroup %s, want the sandbox's %s", pid, got, want)
	}
	// sh and the loop's sleep (once the loop has forked it), sh under the task's pid.
	var listed []string
	testutil.WaitFor(t, "ctr task ps to list sh and sleep", func() bool {
		listed = nil
		for _, line := range strings.Split(strings.TrimSpace(h.ctr("task", "ps", "box")), "\n")[1:] {
			if f := strings.Fields(line); len(f) > 0 {
				listed = append(listed, f[0])
			}
		}
		return len(listed) == 2
	})
	if !slices.Contains(listed, strconv.Itoa(pid)) {
		t.Errorf("ctr task ps lists %v, without the task's pid %d", listed, pid)
	}
	// An exec has a stand-in of its own from its Start until its exit is published.
	h.ctr("task", "exec", "-d", "--exec-id", "nap", "box", "sleep", "1000")
	waitEvent(t, events, "/tasks/exec-started", `"nap"`)
	var execPid int
	for _, line := range strings.Split(h.ctr("task", "ps", "box"), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && strings.Contains(line, "nap") {
			execPid, _ = strconv.Atoi(f[0])
		}
	}
	if execPid == 0 || execPid == pid {
		t.Fatalf("ctr task ps lists exec nap under pid %d (the task's %d):\n%s", execPid, pid, h.ctr("task", "ps", "box"))
	}
	if got, want := testutil.MemoryCgroup(t, execPid), "/vessel-test/box"; got != want {
		t.Errorf("exec pid %d is in cgroup %s, want the sandbox's %s", execPid, got, want)
	}
	if got := len(h.standIns()); got != 2 {
		t.Errorf("%d stand-ins with exec nap running, want 2 (the task's and the exec's): %v", got, h.standIns())
	}
	h.ctr("task", "kill", "--exec-id", "nap", "-s", "SIGKILL", "box")
	waitEvent(t, events, "/tasks/exit", `"nap"`)
	if err := unix.Kill(execPid, 0); !errors.Is(err, unix.ESRCH) {
		t.Errorf("exec pid %d once its exit was published: kill 0 gave %v, want ESRCH", execPid, err)
	}
	// The guest process is gone too, not left a zombie: the next exec, as critest's execSync
	// with timeout spec runs one after containerd killed a timed-out exec, finds no trace.
	if out := h.ctr("task", "exec", "--exec-id", "look", "box", "sh", "-c", "ps -o stat= -o comm= -o args= | awk '$2 == \"sleep\" && $4 == 1000' | grep . || echo none"); strings.TrimSpace(out) != "none" {
		t.Errorf("once exec nap's exit was published, the container still has its process:\n%s", out)
	}
	waitEvent(t, events, "/tasks/exit", `"look"`)
	if err := unix.Kill(pid, 0); err != nil {
		t.Errorf("task pid %d once the exec's exit was published: %v", pid, err)
	}
	h.ctr("task", "kill", "-s", "SIGKILL", "box")
	waitEvent(t, events, "/tasks/exit", `"box"`)
	if err := unix.Kill(pid, 0); !errors.Is(err, unix.ESRCH) {
		t.Errorf("task pid %d once the exit was published: kill 0 gave %v, want ESRCH", pid, err)
	}
}
