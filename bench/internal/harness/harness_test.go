package harness

import (
	"strings"
	"testing"
)

func TestParseTaskList(t *testing.T) {
	got, err := parseTaskList(strings.NewReader("TASK    PID     STATUS    \nr1      4526    RUNNING\nv1      4565    RUNNING\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["r1"] != 4526 || got["v1"] != 4565 {
		t.Errorf("got %v", got)
	}
	if _, err := parseTaskList(strings.NewReader("x notapid RUNNING\n")); err == nil {
		t.Error("bad pid parsed")
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Options)
		ok   bool
	}{
		{"defaults", func(*Options) {}, true},
		{"quick", func(o *Options) { *o = QuickOptions(); o.Out = "x" }, true},
		{"one measure", func(o *Options) { o.Measures = []string{MeasureMemory} }, true},
		{"unknown measure", func(o *Options) { o.Measures = []string{"speed"} }, false},
		{"no runs", func(o *Options) { o.Runs = 0 }, false},
		{"no output", func(o *Options) { o.Out = "" }, false},
		{"bad memory count", func(o *Options) { o.MemoryCounts = []int{0} }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := DefaultOptions()
			o.Out = "out"
			tc.mod(&o)
			err := o.validate()
			if (err == nil) != tc.ok {
				t.Errorf("validate: got %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestAllMeasuresByDefault(t *testing.T) {
	o := DefaultOptions()
	o.Out = "out"
	if err := o.validate(); err != nil {
		t.Fatal(err)
	}
	if len(o.Measures) != len(Measures) {
		t.Errorf("got measures %v, want all", o.Measures)
	}
}
