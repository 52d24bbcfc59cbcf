package cli_test

import (
	"encoding/json"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestStartContainerHook runs startContainer hooks as runc does: in the container, just
// before its process, with the path resolved in the container's root, and under the
// container's seccomp filter. A hook that succeeds leaves the state it read on stdin in
// the container, where the process prints it; a hook that the filter kills (mkdir is
// SCMP_ACT_KILL) ends the container before its process runs, and `vessel run` fails with
// the hook's error on stderr (runc's bats test seccomp.bats "runc run [seccomp]
// (startContainer hook)").
func TestStartContainerHook(t *testing.T) {
	h := newHarness(t)

	b := h.bundle([]string{"cat", "/dev/shm/hook-state"}, func(s *specs.Spec) {
		s.Hooks = &specs.Hooks{StartContainer: []specs.Hook{{Path: "/bin/sh", Args: []string{"sh", "-c", "cat > /dev/shm/hook-state"}}}}
	})
	stdout, stderr, code := h.run("run", "--bundle", b, "sh1")
	if code != 0 {
		t.Fatalf("run with a startContainer hook: exit %d, stderr %s", code, tail(stderr, 20))
	}
	var st specs.State
	if err := json.Unmarshal([]byte(stdout), &st); err != nil {
		t.Fatalf("the container printed %q, want the hook's state: %v", stdout, err)
	}
	if st.ID != "sh1" || st.Status != specs.StateCreated || st.Pid <= 0 {
		t.Errorf("hook state %+v: want id sh1, status created, the init's guest pid", st)
	}

	b = h.bundle([]string{"/bin/true"}, func(s *specs.Spec) {
		s.Linux.Seccomp = &specs.LinuxSeccomp{
			DefaultAction: specs.ActAllow,
			Architectures: []specs.Arch{specs.ArchX86, specs.ArchX32},
			Syscalls:      []specs.LinuxSyscall{{Names: []string{"mkdir", "mkdirat"}, Action: specs.ActKill}},
		}
		s.Hooks = &specs.Hooks{StartContainer: []specs.Hook{{Path: "/bin/sh", Args: []string{"sh", "-c", "mkdir /dev/shm/foo"}}}}
	})
	_, stderr, code = h.run("run", "--bundle", b, "sh2")
	if code != 255 {
		t.Errorf("run with a startContainer hook killed by seccomp: exit %d, want 255 (the container's init failing)", code)
	}
	for _, want := range []string{"error running startContainer hook #0", "bad system call"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr %q lacks %q", tail(stderr, 20), want)
		}
	}
	h.assertNoLeftovers()
}
