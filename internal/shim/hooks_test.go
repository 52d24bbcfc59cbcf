package shim

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/vessel-containers/vessel/internal/hooks"
	"github.com/vessel-containers/vessel/internal/network/nettest"
	"github.com/vessel-containers/vessel/internal/testutil"
)

// TestOCIHooks runs a hook that records its state, the network namespace of
// /proc/<state.pid> and whether that pid is a process: with a pod network namespace, the
// pid is a process in that namespace (as nerdctl's createRuntime hook needs), gone once the
// hooks ran; without one it is the shim's; a shim whose caller runs the hooks runs none,
// and a failing hook names itself.
func TestOCIHooks(t *testing.T) {
	testutil.RequiresRoot(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	record := filepath.Join(dir, "record")
	// The state, the namespace /proc/<pid>/ns/net links to, and "process" when the pid is
	// a thread group's leader (a thread's id is not), one per line.
	body := "#!/bin/sh\nstate=$(cat)\npid=$(echo \"$state\" | sed 's/.*\"pid\":\\([0-9]*\\).*/\\1/')\n" +
		"echo \"$state\" >> " + out + "\nreadlink /proc/$pid/ns/net >> " + out + "\n" +
		"if [ \"$(sed -n 's/^Tgid:\t//p' /proc/$pid/status)\" = \"$pid\" ]; then echo process; else echo thread; fi >> " + out + "\n"
	if err := os.WriteFile(record, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	spec := &specs.Spec{
		Annotations: map[string]string{"a": "b"},
		Hooks: &specs.Hooks{
			CreateRuntime: []specs.Hook{{Path: record}},
			Poststop:      []specs.Hook{{Path: "/bin/false"}},
		},
	}
	pod := nettest.New(t)
	var podStat unix.Stat_t
	if err := unix.Stat(pod.Path, &podStat); err != nil {
		t.Fatal(err)
	}
	podNS := fmt.Sprintf("net:[%d]", podStat.Ino)
	hostNS, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	for _, tc := range []struct {
		name, netns, wantNS string
		wantPid             int
	}{
		{name: "pod netns", netns: pod.Path, wantNS: podNS},
		{name: "no netns", wantNS: hostNS, wantPid: os.Getpid()},
		{name: "netns gone", netns: filepath.Join(dir, "gone"), wantNS: hostNS, wantPid: os.Getpid()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(out)
			h := (&service{}).newOCIHooks(spec, "c1", "/bundle", tc.netns)
			if err := h.run(ctx, specs.StateCreating, hooks.Prestart, hooks.CreateRuntime); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			if len(lines) != 3 {
				t.Fatalf("hook output: %q, want the state, a namespace and what the pid is", b)
			}
			var st specs.State
			if err := json.Unmarshal([]byte(lines[0]), &st); err != nil {
				t.Fatal(err)
			}
			if st.ID != "c1" || st.Bundle != "/bundle" || st.Status != specs.StateCreating || st.Annotations["a"] != "b" {
				t.Errorf("state: got %+v", st)
			}
			if tc.wantPid != 0 && st.Pid != tc.wantPid {
				t.Errorf("state pid: got %d, want %d", st.Pid, tc.wantPid)
			}
			if lines[1] != tc.wantNS {
				t.Errorf("/proc/<state.pid>/ns/net: got %s, want %s", lines[1], tc.wantNS)
			}
			if lines[2] != "process" {
				t.Errorf("state pid %d is a %s, want a process", st.Pid, lines[2])
			}
			if tc.wantPid == 0 {
				if _, err := os.Stat(fmt.Sprintf("/proc/%d", st.Pid)); !os.IsNotExist(err) {
					t.Errorf("the hooks' process %d is left after the hooks ran: %v", st.Pid, err)
				}
			}
		})
	}

	if h := (&service{callerRunsHooks: true}).newOCIHooks(spec, "c1", "/bundle", ""); h != nil {
		t.Error("a shim whose caller runs the hooks has hooks to run")
	}
	if h := (&service{}).newOCIHooks(&specs.Spec{}, "c1", "/bundle", ""); h != nil {
		t.Error("a spec without hooks has hooks to run")
	}
	err = (&service{}).newOCIHooks(spec, "c1", "/bundle", "").run(ctx, specs.StateStopped, hooks.Poststop)
	if err == nil || !strings.Contains(err.Error(), "poststop hook #0 (/bin/false)") {
		t.Errorf("failing hook: got %v", err)
	}
}
