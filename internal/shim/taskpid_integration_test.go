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
// processes, and gone by the time the task's exit is published, as a runc task's pid is.
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
	h.ctr("task", "kill", "-s", "SIGKILL", "box")
	waitEvent(t, events, "/tasks/exit", `"box"`)
	if err := unix.Kill(pid, 0); !errors.Is(err, unix.ESRCH) {
		t.Errorf("task pid %d once the exit was published: kill 0 gave %v, want ESRCH", pid, err)
	}
}
