package cli_test

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/vessel-containers/vessel/internal/testutil"
)

// orphanScript leaves an orphan: a subshell that waits for /tmp/go and then exits 3,
// whose parent (the script's shell) exits at once. In a container that shares the guest's
// pid namespace the orphan is re-parented to the guest's PID 1, the agent. It has no
// stdio of its caller: a process's output ends when the last holder of its stdout closes
// it, and vessel waits for that.
const orphanScript = `#!/bin/sh
( while [ ! -e /tmp/go ]; do sleep 0.05; done; exit 3 ) </dev/null >/dev/null 2>&1 &
echo "$1 $!" >> /tmp/orphans
`

// guestStat is the state letter and parent pid of a guest process, read through
// `vessel debug exec` (the guest's /proc, outside every container); ok is false once the
// process is gone.
func guestStat(h *harness, sandbox string, pid int) (state string, ppid int, ok bool) {
	h.t.Helper()
	out, errOut, code := h.run("debug", "exec", sandbox, "--", "sh", "-c", "cat /proc/"+strconv.Itoa(pid)+"/stat 2>/dev/null || true")
	if code != 0 {
		h.t.Fatalf("debug exec cat /proc/%d/stat: exit %d: %s", pid, code, errOut)
	}
	out = strings.TrimSpace(out)
	if out == "" {
		return "", 0, false
	}
	fields := strings.Fields(out[strings.LastIndexByte(out, ')')+1:])
	if len(fields) < 2 {
		h.t.Fatalf("/proc/%d/stat: %q", pid, out)
	}
	ppid, err := strconv.Atoi(fields[1])
	if err != nil {
		h.t.Fatalf("/proc/%d/stat: %q", pid, out)
	}
	return fields[0], ppid, true
}

// TestOrphansReaped: a container that shares the guest's pid namespace leaves orphans,
// from its init and from an exec, to the agent (PID 1 of the guest). Once they exit the
// agent reaps them: they do not stay zombies. The exit statuses the agent waits for itself
// are untouched: the exec's (5) and the container's (7).
func TestOrphansReaped(t *testing.T) {
	h := newDebugHarness(t)
	h.subreaper()
	b := h.bundle([]string{"sh", "-c", "sh /orphan.sh init; while [ ! -e /tmp/stop ]; do sleep 0.05; done; exit 7"}, func(s *specs.Spec) {
		// No pid namespace of its own: the container's processes are in the guest's.
		s.Linux.Namespaces = slices.DeleteFunc(s.Linux.Namespaces, func(ns specs.LinuxNamespace) bool { return ns.Type == specs.PIDNamespace })
	})
	if err := os.WriteFile(filepath.Join(b, "rootfs", "orphan.sh"), []byte(orphanScript), 0o755); err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(t.TempDir(), "pid")
	h.ok("create", "--bundle", b, "--pid-file", pidFile, "orph")
	standIn := readPid(t, pidFile)
	defer h.run("delete", "--force", "orph")
	h.ok("start", "orph")

	if out, errOut, code := h.run("exec", "orph", "sh", "-c", "sh /orphan.sh exec; exit 5"); code != 5 {
		t.Fatalf("exec: exit %d, want 5 (stdout %q, stderr %q)", code, out, errOut)
	}
	var orphans []int
	testutil.WaitFor(t, "both orphans recorded", func() bool {
		out, _, _ := h.run("exec", "orph", "cat", "/tmp/orphans")
		orphans = orphans[:0]
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if f := strings.Fields(line); len(f) == 2 {
				if pid, err := strconv.Atoi(f[1]); err == nil {
					orphans = append(orphans, pid)
				}
			}
		}
		return len(orphans) == 2
	})
	for _, pid := range orphans {
		state, ppid, ok := guestStat(h, "orph", pid)
		if !ok || ppid != 1 || state == "Z" {
			t.Fatalf("orphan %d: state %q, parent %d, alive %v; want a live process re-parented to the agent (1)", pid, state, ppid, ok)
		}
	}
	h.ok("exec", "orph", "touch", "/tmp/go")
	for _, pid := range orphans {
		testutil.WaitFor(t, "orphan "+strconv.Itoa(pid)+" to be reaped", func() bool {
			_, _, ok := guestStat(h, "orph", pid)
			return !ok
		})
	}
	// No zombie of the agent is left in the guest. A process that ends between the glob
	// and its read (the shell's own children) is skipped: it is no zombie.
	out := h.ok("debug", "exec", "orph", "--", "sh", "-c", "for f in /proc/[0-9]*/stat; do cat $f 2>/dev/null; done; exit 0")
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(line[strings.LastIndexByte(line, ')')+1:]); len(f) > 1 && f[0] == "Z" && f[1] == "1" {
			t.Errorf("zombie child of the agent left: %s", line)
		}
	}

	h.ok("exec", "orph", "touch", "/tmp/stop")
	if code := reap(t, standIn); code != 7 {
		t.Errorf("container exit status %d, want 7", code)
	}
	h.wantState("orph", specs.StateStopped)
	h.ok("delete", "orph")
}
