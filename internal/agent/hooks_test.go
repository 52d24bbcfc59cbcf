//go:build linux

package agent

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"
)

func TestGuestHooks(t *testing.T) {
	dir := t.TempDir()
	write := func(rel string, mode os.FileMode) string {
		t.Helper()
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	b := write("prestart/20-b", 0o755)
	a := write("prestart/10-a", 0o700)
	write("prestart/30-not-executable", 0o644)
	if err := os.Mkdir(filepath.Join(dir, "prestart", "40-dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	stop := write("poststop/x", 0o755)
	write("unknown-type/y", 0o755)

	got, err := guestHooks(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := &specs.Hooks{
		Prestart: []specs.Hook{{Path: a, Args: []string{a, "prestart"}}, {Path: b, Args: []string{b, "prestart"}}}, //nolint:staticcheck // Kata's guest hook type
		Poststop: []specs.Hook{{Path: stop, Args: []string{stop, "poststop"}}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("guestHooks:\n got %+v\nwant %+v", got, want)
	}

	for _, none := range []string{"", filepath.Join(dir, "missing"), filepath.Join(dir, "unknown-type")} {
		if h, err := guestHooks(none); err != nil || h != nil {
			t.Errorf("guestHooks(%q): got %+v, %v; want none", none, h, err)
		}
	}
}
