package cli

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/vessel-containers/vessel/internal/hostcgroup"
	"github.com/vessel-containers/vessel/internal/store"
	"github.com/vessel-containers/vessel/internal/testutil"
)

// TestEvictMonitor: a delete moves a monitor that still runs out of the sandbox's cgroup,
// which can then be removed while the monitor lives on.
func TestEvictMonitor(t *testing.T) {
	testutil.RequiresRoot(t)
	root := testutil.CgroupV2Root(t)
	dir := filepath.Join(root, fmt.Sprintf("vessel-cli-evict-test-%d", os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	removed := false
	defer func() {
		if !removed {
			_ = os.Remove(dir)
		}
	}()
	monitor := exec.Command("sleep", "600")
	if err := monitor.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = monitor.Process.Kill(); _ = monitor.Wait() }()
	pid := monitor.Process.Pid
	if err := hostcgroup.Place(pid, []string{dir}); err != nil {
		t.Fatal(err)
	}
	start, err := procStart(pid)
	if err != nil {
		t.Fatal(err)
	}
	r := &ociRuntime{}
	r.evictMonitor(context.Background(), &store.Container{Pid: pid, PidStart: start})
	procs, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(strings.Fields(string(procs)), strconv.Itoa(pid)) {
		t.Errorf("the monitor %d is still in %s after evictMonitor", pid, dir)
	}
	if err := os.Remove(dir); err != nil {
		t.Fatalf("remove the sandbox's cgroup after evictMonitor: %v", err)
	}
	removed = true
}
