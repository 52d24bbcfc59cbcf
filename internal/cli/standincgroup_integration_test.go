package cli_test

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestHostPidInCgroupsPath: the pid that create reports (its monitor's) and the task's
// stand-in in the shim are in the host cgroup at the container's linux.cgroupsPath in every
// hierarchy, the hybrid host's v2 one too, as runc's container process is; the cgroup an
// exec shows in the guest is the one the host shows for that pid (runc's bats test "runc
// exec (cgroup v1+hybrid joins correct cgroup)"). A forced delete of the running container
// removes the cgroup.
func TestHostPidInCgroupsPath(t *testing.T) {
	h := newHarness(t)
	h.subreaper()
	b, cg := h.cgroupsPathBundle("hostpidcg")
	pid, remove := h.created(b, "hostpidcg1")
	standIn := standInOf(t, "hostpidcg1")
	for _, p := range []int{pid, standIn} {
		lines := cgroupLines(t, p)
		for _, l := range lines {
			if f := strings.SplitN(l, ":", 3); len(f) != 3 || f[2] != cg {
				t.Errorf("pid %d is in %q, want %s in every hierarchy", p, l, cg)
			}
		}
		if last := lines[len(lines)-1]; !strings.HasPrefix(last, "0::") {
			t.Errorf("pid %d: the last line of /proc/PID/cgroup is %q, want the v2 hierarchy's", p, last)
		}
	}
	h.ok("start", "hostpidcg1")
	hostLast := cgroupLines(t, pid)[len(cgroupLines(t, pid))-1]
	if got := strings.TrimSpace(h.ok("exec", "hostpidcg1", "cat", "/proc/self/cgroup")); got != hostLast {
		t.Errorf("an exec's cgroup in the guest %q, the pid's on the host %q: want the same", got, hostLast)
	}
	remove()
	left, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", cg))
	if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", cg)); err == nil {
		left = append(left, filepath.Join("/sys/fs/cgroup", cg))
	}
	if len(left) > 0 {
		t.Errorf("the container's cgroup is left after its delete: %v", left)
	}
	h.assertNoLeftovers()
}

// cgroupLines reads /proc/PID/cgroup.
func cgroupLines(t *testing.T, pid int) []string {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(data)), "\n")
}

// standInOf finds the shim's stand-in of container id's init process (internal/taskpid:
// command line "vessel-task id").
func standInOf(t *testing.T, id string) int {
	t.Helper()
	want := []byte("vessel-task\x00" + id + "\x00")
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if bytes.Equal(cmdline, want) {
			return pid
		}
	}
	t.Fatalf("no stand-in of container %s", id)
	return 0
}
