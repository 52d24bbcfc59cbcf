package bundle

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestRuncSpecMatchesRunc compares RuncSpec with what the runc installed on this
// machine writes for `runc spec`: tools written against runc (its own integration tests
// among them) edit that file and expect the same starting point. Only the hostname and the
// spec version may differ.
func TestRuncSpecMatchesRunc(t *testing.T) {
	runc, err := exec.LookPath("runc")
	if err != nil {
		t.Skip("runc is not installed: nothing to compare with")
	}
	dir := t.TempDir()
	cmd := exec.Command(runc, "spec")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("runc spec: %v: %s", err, out)
	}
	data, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var want specs.Spec
	if err := json.Unmarshal(data, &want); err != nil {
		t.Fatal(err)
	}
	got := RuncSpec([]string{"sh"}, true)
	if got.Hostname != "vessel" {
		t.Errorf("hostname %q, want vessel", got.Hostname)
	}
	got.Hostname, want.Hostname = "", ""
	got.Version, want.Version = "", ""
	for _, c := range []struct {
		what      string
		got, want any
	}{
		{"process", got.Process, want.Process},
		{"root", got.Root, want.Root},
		{"mounts", got.Mounts, want.Mounts},
		{"linux.namespaces", got.Linux.Namespaces, want.Linux.Namespaces},
		{"linux.resources", got.Linux.Resources, want.Linux.Resources},
		{"linux.maskedPaths", got.Linux.MaskedPaths, want.Linux.MaskedPaths},
		{"linux.readonlyPaths", got.Linux.ReadonlyPaths, want.Linux.ReadonlyPaths},
	} {
		g, _ := json.Marshal(c.got)
		w, _ := json.Marshal(c.want)
		var gv, wv any
		_ = json.Unmarshal(g, &gv)
		_ = json.Unmarshal(w, &wv)
		if !reflect.DeepEqual(gv, wv) {
			t.Errorf("%s differs from runc spec:\n vessel: %s\n   runc: %s", c.what, g, w)
		}
	}
}
