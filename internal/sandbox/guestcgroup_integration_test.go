package sandbox

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/vessel-containers/vessel/internal/bundle"
)

// atCgroup sets the spec's linux.cgroupsPath to p and drops its cgroup namespace, as
// runc's spec is on a cgroup v1 host, so that /proc/self/cgroup shows the full path.
func atCgroup(p string) func(*specs.Spec) {
	return func(s *specs.Spec) {
		s.Linux.CgroupsPath = p
		ns := s.Linux.Namespaces[:0]
		for _, n := range s.Linux.Namespaces {
			if n.Type != specs.CgroupNamespace {
				ns = append(ns, n)
			}
		}
		s.Linux.Namespaces = ns
	}
}

// execOut runs args in c as exec execID and returns its exit status and stdout.
func (e *env) execOut(ctx context.Context, c *Container, execID string, args ...string) (int, string) {
	e.t.Helper()
	p := bundle.DefaultSpec(args, false).Process
	if err := c.Exec(ctx, execID, p, ExecOptions{}); err != nil {
		e.t.Fatalf("exec %v: %v", args, err)
	}
	var out bytes.Buffer
	st := c.Attach(ctx, execID, IO{Stdout: &out})
	code, err := c.Wait(ctx, execID)
	if err != nil {
		e.t.Fatalf("wait for exec %v: %v", args, err)
	}
	if err := st.Wait(); err != nil {
		e.t.Fatalf("stdio of exec %v: %v", args, err)
	}
	return code, out.String()
}

// guestCgroupDirs lists the guest's cgroup directories below the given top-level ones,
// seen from a privileged container in the guest's pid namespace (through the agent's root).
func (e *env) guestCgroupDirs(id string, tops ...string) []string {
	e.t.Helper()
	script := "cd /proc/1/root/sys/fs/cgroup && for d in " + strings.Join(tops, " ") + "; do [ -d $d ] && find $d -type d; done; echo listed"
	c := e.container(id, []string{"sh", "-c", script}, privilegedNoPidNS)
	code, out, errs := e.run(c, nil)
	e.deleteContainer(id)
	if code != 0 || !strings.HasSuffix(out, "listed\n") {
		e.t.Fatalf("list the guest's cgroups: exit %d, %s%s", code, out, errs)
	}
	dirs := strings.Fields(strings.TrimSuffix(out, "listed\n"))
	return dirs
}

// TestPodCgroupsPaths runs the containers of a pod in one VM with the cgroupsPaths
// containerd's CRI gives them: in the guest each container's cgroup is at its path, as
// runc places it on a host, and /proc/self/cgroup shows it to the init and to an exec; a
// relative path with ".." is cleaned below the root; systemd's slice:prefix:name becomes
// the scope in the expanded slices; a path another container holds is refused naming it;
// the directories the agent made go with the last container in them, those it found stay.
func TestPodCgroupsPaths(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	pause := e.container("pause", []string{"sleep", "600"}, atCgroup("/kubepods/besteffort/pod1/pause"))
	if err := pause.Start(ctx); err != nil {
		t.Fatal(err)
	}
	const pausePath = "0::/kubepods/besteffort/pod1/pause\n"
	if code, out := e.execOut(ctx, pause, "exec1", "cat", "/proc/1/cgroup", "/proc/self/cgroup"); code != 0 || out != pausePath+pausePath {
		t.Errorf("cgroups of the init and an exec: exit %d, %q; want %q twice", code, out, pausePath)
	}

	app := e.container("app", []string{"cat", "/proc/self/cgroup"}, atCgroup("kubepods/besteffort/../besteffort/pod1/app/../../../../../../kubepods/besteffort/pod1/app"))
	if code, out, errs := e.run(app, nil); code != 0 || out != "0::/kubepods/besteffort/pod1/app\n" {
		t.Errorf("cgroup of a container with a relative path: exit %d, %q %q; want 0::/kubepods/besteffort/pod1/app", code, out, errs)
	}
	sd := e.container("sd", []string{"cat", "/proc/self/cgroup"}, atCgroup("kubepods-besteffort-pod2.slice:cri-containerd:sd"))
	const sdPath = "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod2.slice/cri-containerd-sd.scope"
	if code, out, errs := e.run(sd, nil); code != 0 || out != "0::"+sdPath+"\n" {
		t.Errorf("cgroup of a container with a systemd path: exit %d, %q %q; want 0::%s", code, out, errs, sdPath)
	}

	for _, tc := range []struct{ path, want string }{
		{"/kubepods/besteffort/pod1/pause", `is the cgroup of container "pause"`},
		{"/kubepods/besteffort/pod1/pause/sub", `is inside the cgroup /kubepods/besteffort/pod1/pause of container "pause"`},
		{"/kubepods", `contains the cgroup`},
	} {
		_, err := e.tryContainer("clash", []string{"true"}, atCgroup(tc.path))
		if err == nil {
			e.deleteContainer("clash")
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("container at %s: %v; want an error with %q", tc.path, err, tc.want)
		}
	}

	tops := []string{"kubepods", "kubepods.slice"}
	got := strings.Join(e.guestCgroupDirs("list1", tops...), " ")
	want := "kubepods kubepods/besteffort kubepods/besteffort/pod1 kubepods/besteffort/pod1/pause kubepods/besteffort/pod1/app " +
		"kubepods.slice kubepods.slice/kubepods-besteffort.slice kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod2.slice kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod2.slice/cri-containerd-sd.scope"
	if !sameSet(got, want) {
		t.Errorf("guest cgroups with three containers: %s; want %s", got, want)
	}
	e.deleteContainer("app")
	e.deleteContainer("sd")
	if got, want := strings.Join(e.guestCgroupDirs("list2", tops...), " "), "kubepods kubepods/besteffort kubepods/besteffort/pod1 kubepods/besteffort/pod1/pause"; !sameSet(got, want) {
		t.Errorf("guest cgroups with the pause container left: %s; want %s", got, want)
	}
	e.deleteContainer("pause")
	if got := e.guestCgroupDirs("list3", tops...); len(got) != 0 {
		t.Errorf("guest cgroups left after the pod's containers went: %v", got)
	}
	// The path is free again.
	again := e.container("again", []string{"cat", "/proc/self/cgroup"}, atCgroup("/kubepods/besteffort/pod1/pause"))
	if code, out, errs := e.run(again, nil); code != 0 || out != pausePath {
		t.Errorf("a new container at a removed one's path: exit %d, %q %q; want %q", code, out, errs, pausePath)
	}
	e.deleteContainer("again")
}

// sameSet reports whether the space-separated words of a and b are the same, in any order.
func sameSet(a, b string) bool {
	x, y := strings.Fields(a), strings.Fields(b)
	if len(x) != len(y) {
		return false
	}
	seen := make(map[string]int, len(x))
	for _, w := range x {
		seen[w]++
	}
	for _, w := range y {
		if seen[w]--; seen[w] < 0 {
			return false
		}
	}
	return true
}
