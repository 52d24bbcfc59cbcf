package shim

import (
	"context"
	"errors"
	"testing"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/typeurl/v2"
	"golang.org/x/sys/unix"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
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
	if err := p.startStandIn(); err != nil {
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

// TestProcessInfo: Pids lists the init and exec'd processes under their host pids, the
// rest under their guest pids, and names the exec of an exec'd process.
func TestProcessInfo(t *testing.T) {
	c := &container{id: "c", init: newProcess("c", "", stdio{}), execs: map[string]*process{}}
	c.execs["e"] = newProcess("c", "e", stdio{})
	for _, p := range []*process{c.init, c.execs["e"]} {
		if err := p.startStandIn(); err != nil {
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
