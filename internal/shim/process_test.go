package shim

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"golang.org/x/sys/unix"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
	"github.com/vessel-containers/vessel/internal/taskpid"
)

func TestContainerRunning(t *testing.T) {
	created := func() *process { return newProcess("c", "", stdio{}) }
	started := func() *process { p := created(); p.setRunning(); return p }
	exited := func() *process { p := started(); p.setExited(0); return p }
	for _, tc := range []struct {
		name  string
		init  *process
		execs []*process
		want  bool
	}{
		{"never started", created(), nil, false},
		{"init runs", started(), nil, true},
		{"init exited", exited(), nil, false},
		{"init exited, an exec runs", exited(), []*process{exited(), started()}, true},
		{"init exited, execs exited or never started", exited(), []*process{exited(), created()}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &container{id: "c", init: tc.init, execs: map[string]*process{}}
			for i, p := range tc.execs {
				p.execID = string(rune('a' + i))
				c.execs[p.execID] = p
			}
			if got := c.running(); got != tc.want {
				t.Errorf("running: got %v, want %v", got, tc.want)
			}
		})
	}
}

// TestResizeWithoutTerminal: resizing a process that has no terminal is ignored (runc's
// shim does the same); the container here has no guest, so reaching it would fail.
func TestResizeWithoutTerminal(t *testing.T) {
	c := &container{id: "c", init: newProcess("c", "", stdio{}), execs: map[string]*process{}}
	c.execs["e"] = newProcess("c", "e", stdio{})
	s := &service{containers: map[string]*container{"c": c}}
	for _, execID := range []string{"", "e"} {
		if _, err := s.ResizePty(context.Background(), &taskAPI.ResizePtyRequest{ID: "c", ExecID: execID, Width: 80, Height: 24}); err != nil {
			t.Errorf("resize of process %q without a terminal: %v", execID, err)
		}
	}
}

// TestStandInLivesUntilTheExit: a process's host pid (its stand-in's) exists until the
// exit is recorded and is gone by the time a waiter wakes; the pid stays reported.
func TestStandInLivesUntilTheExit(t *testing.T) {
	p := newProcess("c", "", stdio{})
	if p.pid() != 0 {
		t.Fatalf("pid %d before the stand-in started, want 0", p.pid())
	}
	if err := p.startStandIn(nil); err != nil {
		t.Fatal(err)
	}
	pid := p.pid()
	if err := unix.Kill(int(pid), 0); err != nil {
		t.Fatalf("stand-in %d: %v", pid, err)
	}
	p.setRunning()
	woke := make(chan error, 1)
	go func() {
		<-p.done
		woke <- unix.Kill(int(pid), 0)
	}()
	p.setExited(3)
	if err := <-woke; !errors.Is(err, unix.ESRCH) {
		t.Errorf("stand-in %d when the waiter woke: kill 0 gave %v, want ESRCH", pid, err)
	}
	if p.pid() != pid {
		t.Errorf("pid after the exit %d, want %d", p.pid(), pid)
	}
}

// TestOneStandInPerProcess: a second start of a process's stand-in and a start after its
// exit are refused and leave no stand-in of theirs behind, reaped or not.
func TestOneStandInPerProcess(t *testing.T) {
	p := newProcess("c1", "e1", stdio{})
	if err := p.startStandIn(nil); err != nil {
		t.Fatal(err)
	}
	pid := int(p.pid())
	if err := p.startStandIn(nil); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("second start: %v, want a failed precondition", err)
	}
	if got := standInChildren(t); !slices.Equal(got, []int{pid}) {
		t.Errorf("stand-ins after the refused second start %v, want [%d]", got, pid)
	}
	if int(p.pid()) != pid {
		t.Errorf("pid after the refused second start %d, want %d", p.pid(), pid)
	}
	p.setExited(0)
	if err := p.startStandIn(nil); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("start after the exit: %v, want a failed precondition", err)
	}
	if got := standInChildren(t); len(got) > 0 {
		t.Errorf("stand-ins after the exit %v, want none", got)
	}
	// Never started, exited (a Create rolled back before its stand-in): none starts.
	q := newProcess("c2", "", stdio{})
	q.setExited(137)
	if err := q.startStandIn(nil); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("start of an exited process: %v, want a failed precondition", err)
	}
	if got := standInChildren(t); len(got) > 0 {
		t.Errorf("stand-ins of an exited process %v, want none", got)
	}
}

// standInChildren lists this process's children that are stand-ins, zombies included (a
// stand-in not reaped): those named taskpid.Argv0 and those in state Z.
func standInChildren(t *testing.T) []int {
	t.Helper()
	threads, err := filepath.Glob("/proc/self/task/*/children")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, f := range threads {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // the thread has ended
		}
		for _, field := range strings.Fields(string(b)) {
			pid, err := strconv.Atoi(field)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			zombie := strings.Contains(string(stat), ") Z ")
			if zombie || strings.HasPrefix(string(cmdline), taskpid.Argv0+"\x00") {
				out = append(out, pid)
			}
		}
	}
	slices.Sort(out)
	return out
}

// TestProcessInfo: Pids lists the init and exec'd processes under their host pids, the
// rest under their guest pids, and names the exec of an exec'd process.
func TestProcessInfo(t *testing.T) {
	c := &container{id: "c", init: newProcess("c", "", stdio{}), execs: map[string]*process{}}
	c.execs["e"] = newProcess("c", "e", stdio{})
	for _, p := range []*process{c.init, c.execs["e"]} {
		if err := p.startStandIn(nil); err != nil {
			t.Fatal(err)
		}
		defer p.stopStandIn()
	}
	for _, tc := range []struct {
		name     string
		guest    *agentv1.ProcessInfo
		wantPid  uint32
		wantExec string
	}{
		{"init", &agentv1.ProcessInfo{Pid: 1, Init: true}, c.init.pid(), ""},
		{"exec", &agentv1.ProcessInfo{Pid: 7, ExecId: "e"}, c.execs["e"].pid(), "e"},
		{"child", &agentv1.ProcessInfo{Pid: 9}, 9, ""},
		{"exec the shim does not hold", &agentv1.ProcessInfo{Pid: 11, ExecId: "gone"}, 11, "gone"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			info, err := c.processInfo(tc.guest)
			if err != nil {
				t.Fatal(err)
			}
			if info.Pid != tc.wantPid {
				t.Errorf("pid %d, want %d", info.Pid, tc.wantPid)
			}
			var gotExec string
			if info.Info != nil {
				v, err := typeurl.UnmarshalAny(info.Info)
				if err != nil {
					t.Fatal(err)
				}
				gotExec = v.(*options.ProcessDetails).ExecID
			}
			if gotExec != tc.wantExec {
				t.Errorf("exec %q, want %q", gotExec, tc.wantExec)
			}
		})
	}
}
