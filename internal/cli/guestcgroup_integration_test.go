package cli_test

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestGuestCgroupAtCgroupsPath: a container whose spec names linux.cgroupsPath (and has no
// cgroup namespace, as runc's spec on a cgroup v1 host) shows that path in
// /proc/self/cgroup, to its init and to an exec, as runc's containers do: the guest places
// its cgroup there.
func TestGuestCgroupAtCgroupsPath(t *testing.T) {
	h := newHarness(t)
	h.subreaper()
	b, cg := h.cgroupsPathBundle("guestcg")
	_, remove := h.created(b, "guestcg1")
	h.ok("start", "guestcg1")
	want := "0::" + cg + "\n"
	if got := h.ok("exec", "guestcg1", "cat", "/proc/1/cgroup", "/proc/self/cgroup"); got != want+want {
		t.Errorf("cgroups of the init and an exec: %q; want %q twice", got, want)
	}
	remove()
	h.assertNoLeftovers()
}

// cgroupsPathBundle makes a bundle running sleep whose linux.cgroupsPath is the cgroup c1
// under a parent named after tag and this process, without a cgroup namespace (as runc's
// spec on a cgroup v1 host), and returns it with that path. On the host the container's
// cgroup goes with the container and its parent stays (as with runc): the test's cleanup
// removes the parent from every hierarchy.
func (h *harness) cgroupsPathBundle(tag string) (bundle, cg string) {
	t := h.t
	parent := "/vessel-test-" + tag + "-" + strconv.Itoa(os.Getpid())
	cg = parent + "/c1"
	t.Cleanup(func() {
		dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", parent))
		if st, err := os.Stat(filepath.Join("/sys/fs/cgroup", parent)); err == nil && st.IsDir() {
			dirs = append(dirs, filepath.Join("/sys/fs/cgroup", parent))
		}
		for _, d := range dirs {
			if err := os.Remove(d); err != nil && !os.IsNotExist(err) && !t.Failed() {
				t.Errorf("remove the test's cgroup parent: %v", err)
			}
		}
	})
	bundle = h.bundle([]string{"sleep", "1000"}, func(s *specs.Spec) {
		s.Linux.CgroupsPath = cg
		ns := s.Linux.Namespaces[:0]
		for _, n := range s.Linux.Namespaces {
			if n.Type != specs.CgroupNamespace {
				ns = append(ns, n)
			}
		}
		s.Linux.Namespaces = ns
	})
	return bundle, cg
}
