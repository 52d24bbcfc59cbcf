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
	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/testutil"
)

// TestHostCgroupBoundsVM puts a sandbox in a pod cgroup below a parent the test made with
// a 640 MiB memory limit: the VM runs in the pod's cgroup and the sandbox's owner (the
// test process, sandbox_cgroup_only off) is back in its own; a container that fills a
// 900 MiB tmpfs in a 1 GiB guest touches more guest memory than the limit allows, so the
// host's OOM killer ends the VM, and the container's wait reports it. After delete the pod
// cgroup is gone.
func TestHostCgroupBoundsVM(t *testing.T) {
	g := testutil.RequiresVM(t)
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

	root, err := os.MkdirTemp("", "vcg")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(root)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	sb, err := Create(ctx, Config{
		ID: "cgsb", Root: root,
		VM:         hypervisor.Config{Kernel: g.Kernel, Initrd: g.Initrd, VCPUs: 1, MemoryMiB: 1024},
		HostCgroup: hostcgroup.Config{Path: pod},
	})
	if err != nil {
		t.Fatalf("create sandbox: %v", err)
	}
	e := &env{t: t, sb: sb, root: root}
	pid := sb.VM().Pid()
	deleted := false
	defer func() {
		if !deleted {
			_ = sb.Delete(context.Background())
		}
	}()
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
	deleted = true
	if err := sb.Delete(context.Background()); err != nil {
		t.Fatalf("delete: %v", err)
	}
	assertNoLeftovers(t, root, pid)
	if _, err := os.Stat(memDir(pod)); !os.IsNotExist(err) {
		t.Fatalf("pod cgroup %s after delete: %v", memDir(pod), err)
	}
}
