package sandbox

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/cgroups/v3"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/vessel-containers/vessel/internal/hostcgroup"
	"github.com/vessel-containers/vessel/internal/testutil"
)

// TestHostCgroupBoundsVM puts a sandbox in a pod cgroup below a parent the test made with
// a 640 MiB memory limit: the VM runs in the pod's cgroup and the sandbox's owner (the
// test process, sandbox_cgroup_only off) is back in its own; a container that fills a
// 900 MiB tmpfs in a 1 GiB guest touches more guest memory than the limit allows, so the
// host's OOM killer ends the VM, and the container's wait reports it. After delete the pod
// cgroup is gone.
func TestHostCgroupBoundsVM(t *testing.T) {
	testutil.RequiresVM(t)
	testutil.RequiresRoot(t)
	unified := cgroups.Mode() == cgroups.Unified
	memDir := func(p string) string {
		if unified {
			return filepath.Join("/sys/fs/cgroup", p)
		}
		return filepath.Join("/sys/fs/cgroup/memory", p)
	}
	parent := fmt.Sprintf("/vessel-cgtest-%d", os.Getpid())
	pod := parent + "/pod"
	if err := os.Mkdir(memDir(parent), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		entries, _ := os.ReadDir("/sys/fs/cgroup")
		for _, e := range entries {
			_ = os.Remove(filepath.Join("/sys/fs/cgroup", e.Name(), parent))
		}
		_ = os.Remove(filepath.Join("/sys/fs/cgroup", parent))
	})
	limitFile, limit := "memory.limit_in_bytes", strconv.Itoa(640<<20)
	if unified {
		if err := os.WriteFile(memDir(parent)+"/cgroup.subtree_control", []byte("+memory"), 0o644); err != nil {
			t.Fatal(err)
		}
		limitFile = "memory.max"
	}
	if err := os.WriteFile(filepath.Join(memDir(parent), limitFile), []byte(limit), 0o644); err != nil {
		t.Fatal(err)
	}
	origin := testutil.MemoryCgroup(t, os.Getpid())

	// Runs after the sandbox's deletion (cleanups run last-registered first).
	t.Cleanup(func() {
		if _, err := os.Stat(memDir(pod)); !os.IsNotExist(err) {
			t.Errorf("pod cgroup %s after delete: %v", memDir(pod), err)
		}
	})
	e := newEnvWith(t, func(c *Config) {
		c.VM.MemoryMiB, c.VM.MaxMemoryMiB = 1024, 1024
		c.HostCgroup = hostcgroup.Config{Path: pod}
	})
	pid := e.sb.VM().Pid()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if got := testutil.MemoryCgroup(t, pid); got != pod {
		t.Fatalf("the VMM is in cgroup %s, want the pod's %s", got, pod)
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/oom_score_adj", pid)); err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(vmOOMScoreAdj) {
		t.Fatalf("the VMM's oom_score_adj is %q (%v), want %d", b, err, vmOOMScoreAdj)
	}
	if got := testutil.MemoryCgroup(t, os.Getpid()); got != origin {
		t.Fatalf("the sandbox owner is in cgroup %s, want its own %s (sandbox_cgroup_only off)", got, origin)
	}

	c := e.container("hog", []string{"dd", "if=/dev/zero", "of=/big/fill", "bs=1M", "count=880"}, func(s *specs.Spec) {
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/big", Type: "tmpfs", Source: "tmpfs", Options: []string{"size=900m"}})
	})
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	code, err := c.Wait(ctx, "")
	if err == nil {
		t.Fatalf("the container wrote 880 MiB into guest memory with the pod limited to 640 MiB and exited %d; want the VM killed", code)
	}
	if !strings.Contains(err.Error(), "vm exited") {
		t.Fatalf("wait: %v; want the VM's exit reported", err)
	}
}
