package shim

import (
	"context"
	"testing"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
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
