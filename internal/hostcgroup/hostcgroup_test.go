package hostcgroup

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

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/errdefs"
	"github.com/vessel-containers/vessel/internal/testutil"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in      string
		systemd bool
		want    Target
		err     string
	}{
		{in: "/kubepods/besteffort/pod1/abc", want: Target{Driver: DriverCgroupfs, Path: "/kubepods/besteffort/pod1/abc"}},
		{in: "/kubepods/besteffort/pod1/abc", systemd: true, want: Target{Driver: DriverCgroupfs, Path: "/kubepods/besteffort/pod1/abc"}},
		{in: "default/abc", want: Target{Driver: DriverCgroupfs, Path: "/default/abc"}},
		{in: "/a/../../b", want: Target{Driver: DriverCgroupfs, Path: "/b"}},
		{in: "kubepods-besteffort-pod1.slice:cri-containerd:abc", systemd: true, want: Target{Driver: DriverSystemd, Slice: "kubepods-besteffort-pod1.slice", Unit: "cri-containerd-abc.scope"}},
		{in: "machine.slice:libpod:abc", systemd: true, want: Target{Driver: DriverSystemd, Slice: "machine.slice", Unit: "libpod-abc.scope"}},
		{in: ":vessel:abc", systemd: true, want: Target{Driver: DriverSystemd, Slice: "system.slice", Unit: "vessel-abc.scope"}},
		{in: "system.slice::abc", systemd: true, want: Target{Driver: DriverSystemd, Slice: "system.slice", Unit: "abc.scope"}},
		{in: "system.slice:x:abc.scope", systemd: true, want: Target{Driver: DriverSystemd, Slice: "system.slice", Unit: "abc.scope"}},
		// Without systemd the systemd form is a cgroupfs path, as runc's cgroupfs driver
		// takes it (containerd's CRI writes it for a pod parent ending in .slice).
		{in: "test.slice:cri-containerd:abc", want: Target{Driver: DriverCgroupfs, Path: "/test.slice:cri-containerd:abc"}},
		{in: "a:b", systemd: true, want: Target{Driver: DriverCgroupfs, Path: "/a:b"}},
		{in: "", err: "empty"},
		{in: "/", err: "root cgroup"},
		{in: "/..", err: "root cgroup"},
		{in: "system.slice:x:", systemd: true, err: "empty name"},
		{in: "system:x:abc", systemd: true, err: "does not end in .slice"},
		{in: "system.slice:x:pod.slice", systemd: true, err: "not the slice"},
	} {
		got, err := Parse(tc.in, tc.systemd)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !errdefs.IsInvalidArgument(err) {
				t.Errorf("Parse(%q, %v) = %+v, %v; want an invalid-argument error containing %q", tc.in, tc.systemd, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Parse(%q, %v) = %+v, %v; want %+v", tc.in, tc.systemd, got, err, tc.want)
		}
	}
}

func TestJoinNothing(t *testing.T) {
	g, err := Join(context.Background(), t.TempDir(), "sb", Config{})
	if g != nil || err != nil {
		t.Fatalf("Join with no path = %v, %v; want nothing", g, err)
	}
	if err := g.Add(1); err != nil {
		t.Fatal(err)
	}
	if err := g.Settle(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestRemoveNothingRecorded(t *testing.T) {
	if err := Remove(context.Background(), t.TempDir()); err != nil {
		t.Fatal(err)
	}
}

func TestRemoveCorruptRecord(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, StateName), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Remove(context.Background(), dir); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("Remove of a corrupt record: %v", err)
	}
}

// The systemd connection is refused on a host that does not run systemd.
func TestSystemdRefusedWithoutSystemd(t *testing.T) {
	if SystemdRunning() {
		t.Skip("systemd runs on this host")
	}
	_, err := dialSystemd(context.Background())
	if err == nil || !errdefs.IsNotImplemented(err) || !strings.Contains(err.Error(), "systemd") {
		t.Fatalf("dial systemd on a host without it: %v", err)
	}
}

// cgroupDir is the directory of cgroup path p in the memory hierarchy (or the unified one).
func cgroupDir(p string) string {
	if cgroups.Mode() == cgroups.Unified {
		return filepath.Join(mountpoint, p)
	}
	return filepath.Join(mountpoint, "memory", p)
}

// testParent makes an empty parent cgroup for a test's pod cgroup and removes it after.
func testParent(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to make cgroups")
	}
	parent := fmt.Sprintf("/vessel-hostcgroup-test-%d", os.Getpid())
	t.Cleanup(func() {
		// The pod cgroups are gone by now; the parent is removed in every hierarchy.
		entries, _ := os.ReadDir(mountpoint)
		for _, e := range entries {
			_ = os.Remove(filepath.Join(mountpoint, e.Name(), parent))
		}
		_ = os.Remove(filepath.Join(mountpoint, parent))
	})
	return parent
}

func TestJoinCgroupfs(t *testing.T) {
	for _, sandboxOnly := range []bool{true, false} {
		t.Run(fmt.Sprintf("sandbox_cgroup_only=%v", sandboxOnly), func(t *testing.T) {
			parent := testParent(t)
			pod := parent + "/pod"
			dir := t.TempDir()
			origin := testutil.MemoryCgroup(t, os.Getpid())
			ctx := context.Background()
			g, err := Join(ctx, dir, "sb", Config{Path: pod, SandboxOnly: sandboxOnly})
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			if got := testutil.MemoryCgroup(t, os.Getpid()); got != pod {
				t.Fatalf("the owner is in %s after Join, want %s", got, pod)
			}
			// A process the owner starts now (the VMM) is born in the pod's cgroup.
			child := exec.Command("sleep", "600")
			if err := child.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = child.Process.Kill(); _ = child.Wait() }()
			if got := testutil.MemoryCgroup(t, child.Process.Pid); got != pod {
				t.Fatalf("the owner's child is in %s, want %s", got, pod)
			}
			if err := g.Settle(ctx); err != nil {
				t.Fatal(err)
			}
			want := pod
			if !sandboxOnly {
				want = origin
			}
			if got := testutil.MemoryCgroup(t, os.Getpid()); got != want {
				t.Fatalf("the owner is in %s after Settle, want %s", got, want)
			}
			if got := testutil.MemoryCgroup(t, child.Process.Pid); got != pod {
				t.Fatalf("the owner's child is in %s after Settle, want %s", got, pod)
			}
			// A process that still runs keeps the cgroup: Remove says so and keeps its record.
			if err := Remove(ctx, dir); err == nil || !errdefs.IsFailedPrecondition(err) {
				t.Fatalf("Remove with a process inside: %v", err)
			}
			_ = child.Process.Kill()
			_ = child.Wait()
			if err := Remove(ctx, dir); err != nil {
				t.Fatal(err)
			}
			if got := testutil.MemoryCgroup(t, os.Getpid()); got != origin {
				t.Fatalf("the owner is in %s after Remove, want %s", got, origin)
			}
			if _, err := os.Stat(cgroupDir(pod)); !os.IsNotExist(err) {
				t.Fatalf("pod cgroup %s after Remove: %v", cgroupDir(pod), err)
			}
			if _, err := os.Stat(filepath.Join(dir, StateName)); !os.IsNotExist(err) {
				t.Fatalf("record after Remove: %v", err)
			}
		})
	}
}

// A cgroup that existed before the sandbox is used and left in place.
func TestJoinExistingCgroup(t *testing.T) {
	parent := testParent(t)
	pod := parent + "/pod"
	if err := os.MkdirAll(cgroupDir(pod), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(cgroupDir(pod)) })
	dir := t.TempDir()
	g, err := Join(context.Background(), dir, "sb", Config{Path: pod, SandboxOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	g.Close()
	if got := testutil.MemoryCgroup(t, os.Getpid()); got != pod {
		t.Fatalf("the owner is in %s, want %s", got, pod)
	}
	if err := Remove(context.Background(), dir); err != nil {
		t.Fatal(err)
	}
	if got := testutil.MemoryCgroup(t, os.Getpid()); got == pod {
		t.Fatal("the owner stayed in the pod's cgroup after Remove")
	}
	if _, err := os.Stat(cgroupDir(pod)); err != nil {
		t.Fatalf("a cgroup that existed before was removed: %v", err)
	}
}

// TestStrayControllerDirectory checks that a plain directory named like a v1 controller the
// host does not mount (as tools leave on the cgroup tmpfs) is not taken for a hierarchy:
// the join and the removal go through the mounted hierarchies only.
func TestStrayControllerDirectory(t *testing.T) {
	if cgroups.Mode() == cgroups.Unified {
		t.Skip("no v1 hierarchies on this host")
	}
	parent := testParent(t)
	var stray string
	for _, name := range []string{"net_cls", "net_prio", "perf_event", "hugetlb", "rdma"} {
		if _, err := os.Lstat(filepath.Join(mountpoint, name)); os.IsNotExist(err) {
			stray = filepath.Join(mountpoint, name)
			break
		}
	}
	if stray == "" {
		t.Skip("every v1 controller this test knows is mounted or present on this host")
	}
	if err := os.Mkdir(stray, 0o755); err != nil {
		t.Skipf("cannot make a stray directory in %s: %v", mountpoint, err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(stray) })
	dir := t.TempDir()
	g, err := Join(context.Background(), dir, "sb", Config{Path: parent + "/pod", SandboxOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if _, err := os.Stat(filepath.Join(stray, parent)); !os.IsNotExist(err) {
		t.Errorf("the join made %s in the stray directory: %v", parent, err)
	}
	if err := Remove(context.Background(), dir); err != nil {
		t.Fatalf("remove: %v", err)
	}
}

// TestProcs counts the processes of a cgroup and its descendants in a file tree laid out
// as a v1 host's (a devices hierarchy) and as a v2 host's.
func TestProcs(t *testing.T) {
	write := func(t *testing.T, dir, procs string) {
		t.Helper()
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(procs), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name, hier string
	}{
		{"v1 devices hierarchy", "devices"},
		{"v2", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			base := filepath.Join(root, tc.hier)
			write(t, filepath.Join(base, "pod"), "")
			write(t, filepath.Join(base, "pod", "a"), "10\n11\n")
			write(t, filepath.Join(base, "pod", "a", "sub"), "12\n")
			write(t, filepath.Join(base, "pod", "empty"), "")
			// Another hierarchy's processes are not counted twice.
			write(t, filepath.Join(root, "memory", "pod", "a"), "10\n11\n")
			for p, want := range map[string]int{"/pod/a": 3, "/pod": 3, "/pod/empty": 0, "/pod/none": 0} {
				got, err := Procs(root, p)
				if err != nil || got != want {
					t.Errorf("Procs(%s) = %d, %v; want %d", p, got, err, want)
				}
			}
		})
	}
}

// TestMoveToMissingCgroup: a cgroup that does not exist is refused, naming it, and the
// process stays where it was.
func TestMoveToMissingCgroup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to move processes between cgroups")
	}
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	origin := testutil.MemoryCgroup(t, cmd.Process.Pid)
	missing := fmt.Sprintf("/vessel-hostcgroup-missing-%d", os.Getpid())
	err := Move(cmd.Process.Pid, missing)
	if err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("move into missing cgroup %s: %v, want an error naming it", missing, err)
	}
	if got := testutil.MemoryCgroup(t, cmd.Process.Pid); got != origin {
		t.Errorf("process in cgroup %s after the refused move, want %s", got, origin)
	}
	if _, err := os.Stat(cgroupDir(missing)); !os.IsNotExist(err) {
		t.Errorf("the refused move left %s: %v", cgroupDir(missing), err)
	}
}

// TestDirs: Dirs lists the pod's cgroup in every hierarchy the owner joined, the hybrid
// host's v2 one too; a process Placed there is where the VM is, and Placed in Own's
// cgroups it leaves, so that Remove deletes the cgroup in every hierarchy Join made it in.
func TestDirs(t *testing.T) {
	parent := testParent(t)
	pod := parent + "/pod"
	dir := t.TempDir()
	ctx := context.Background()
	g, err := Join(ctx, dir, "sb", Config{Path: pod})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if err := g.Settle(ctx); err != nil {
		t.Fatal(err)
	}
	dirs, err := Dirs(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{cgroupDir(pod)}
	if hybridUnified() {
		want = append(want, filepath.Join(hybridRoot, pod))
	}
	for _, w := range want {
		if !slices.Contains(dirs, w) {
			t.Errorf("Dirs %v lacks %s", dirs, w)
		}
	}
	child := exec.Command("sleep", "600")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = child.Process.Kill(); _ = child.Wait() }()
	if err := Place(child.Process.Pid, dirs); err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		procs, err := os.ReadFile(filepath.Join(d, "cgroup.procs"))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(strings.Fields(string(procs)), strconv.Itoa(child.Process.Pid)) {
			t.Errorf("the placed process %d is not in %s: %q", child.Process.Pid, d, procs)
		}
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", child.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if hybridUnified() && !strings.Contains(string(data), "\n0::"+pod+"\n") {
		t.Errorf("the placed process's cgroups %q lack the v2 line 0::%s", data, pod)
	}
	// Back where the test runs: the cgroup can go while the process lives on.
	own, err := Own()
	if err != nil {
		t.Fatal(err)
	}
	if err := Place(child.Process.Pid, own); err != nil {
		t.Fatal(err)
	}
	if err := Remove(ctx, dir); err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("cgroup %s after Remove: %v", d, err)
		}
	}
}
