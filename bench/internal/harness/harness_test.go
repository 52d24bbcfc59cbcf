package harness

import (
	"os"
	"path/filepath"
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

func TestBaseConfigText(t *testing.T) {
	dir := t.TempDir()
	if got, err := (&env{}).baseConfigText(); err != nil || got != "" {
		t.Errorf("built-in defaults: got %q, %v; want empty", got, err)
	}
	plain := filepath.Join(dir, "plain.toml")
	if err := os.WriteFile(plain, []byte("[hypervisor]\ndefault_memory = 512\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := (&env{cfgPath: plain}).baseConfigText(); err != nil || !strings.Contains(got, "default_memory = 512") {
		t.Errorf("plain config: got %q, %v", got, err)
	}
	withFactory := filepath.Join(dir, "factory.toml")
	if err := os.WriteFile(withFactory, []byte("[hypervisor]\n  [factory]\nenable_template = true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := (&env{cfgPath: withFactory}).baseConfigText(); err == nil || !strings.Contains(err.Error(), "[factory]") {
		t.Errorf("config with a [factory] section: got %v, want an error naming it", err)
	}
}
