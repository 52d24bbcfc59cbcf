package shim

import "testing"

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
