package hooks

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func script(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRun(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	record := script(t, dir, "record", `cat > "$1.$2"; echo "$2 ${FOO:--}" >> "$1"`+"\n")
	fail := script(t, dir, "fail", "echo boom >&2; exit 3\n")
	slow := script(t, dir, "slow", "exec sleep 10\n")
	state := specs.State{Version: specs.Version, ID: "c1", Status: specs.StateCreating, Pid: 42, Bundle: "/b", Annotations: map[string]string{"a": "b"}}
	one := 1

	for _, tc := range []struct {
		name    string
		hooks   []specs.Hook
		wantErr string
		// wantRuns are the lines the record script wrote, in order.
		wantRuns []string
	}{
		{name: "none"},
		{
			name: "in order with args and env",
			hooks: []specs.Hook{
				{Path: record, Args: []string{"rec-a", out, "1"}, Env: []string{"FOO=x"}},
				{Path: record, Args: []string{"rec-b", out, "2"}, Env: []string{"FOO=y"}},
			},
			wantRuns: []string{"1 x", "2 y"},
		},
		{
			name:     "stops at the first failure",
			hooks:    []specs.Hook{{Path: record, Args: []string{"r", out, "1"}}, {Path: fail}, {Path: record, Args: []string{"r", out, "3"}}},
			wantErr:  "prestart hook #1 (" + fail + "): exit status 3, output: boom",
			wantRuns: []string{"1 -"},
		},
		{
			name:    "timeout",
			hooks:   []specs.Hook{{Path: slow, Timeout: &one}},
			wantErr: "timed out after 1s",
		},
		{
			name:    "missing executable",
			hooks:   []specs.Hook{{Path: filepath.Join(dir, "nope")}},
			wantErr: "no such file",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(out)
			start := time.Now()
			err := Run(context.Background(), Prestart, tc.hooks, state)
			if tc.wantErr == "" && err != nil {
				t.Fatalf("got error %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("got error %v, want one containing %q", err, tc.wantErr)
			}
			if time.Since(start) > 5*time.Second {
				t.Errorf("took %v: the timeout did not kill the hook", time.Since(start))
			}
			data, _ := os.ReadFile(out)
			got := strings.Split(strings.TrimSpace(string(data)), "\n")
			if len(tc.wantRuns) == 0 {
				got = nil
				if len(data) > 0 {
					t.Errorf("hooks ran: %q", data)
				}
			}
			if strings.Join(got, "|") != strings.Join(tc.wantRuns, "|") {
				t.Errorf("runs: got %q, want %q", got, tc.wantRuns)
			}
		})
	}

	t.Run("state on stdin", func(t *testing.T) {
		if err := Run(context.Background(), Poststop, []specs.Hook{{Path: record, Args: []string{"r", out, "s"}}}, state); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(out + ".s")
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]any
		if err := json.Unmarshal(data, &got); err != nil {
			t.Fatalf("stdin is not JSON: %q", data)
		}
		want := map[string]any{"ociVersion": specs.Version, "id": "c1", "status": "creating", "pid": float64(42), "bundle": "/b", "annotations": map[string]any{"a": "b"}}
		for k, v := range want {
			if gv, _ := json.Marshal(got[k]); string(gv) != mustJSON(v) {
				t.Errorf("state[%s]: got %s, want %s", k, gv, mustJSON(v))
			}
		}
	})
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestOf(t *testing.T) {
	spec := &specs.Spec{Hooks: &specs.Hooks{
		CreateRuntime: []specs.Hook{{Path: "/a"}}, Poststop: []specs.Hook{{Path: "/b"}, {Path: "/c"}},
	}}
	if got := Of(spec, CreateRuntime); len(got) != 1 || got[0].Path != "/a" {
		t.Errorf("createRuntime: %v", got)
	}
	if got := Of(spec, Poststop); len(got) != 2 {
		t.Errorf("poststop: %v", got)
	}
	if got := Of(spec, StartContainer); got != nil {
		t.Errorf("startContainer: %v", got)
	}
	if got := Of(&specs.Spec{}, Prestart); got != nil {
		t.Errorf("no hooks: %v", got)
	}
}
