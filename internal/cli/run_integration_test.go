package cli_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vessel-containers/vessel/internal/sharefs"
	"github.com/vessel-containers/vessel/internal/testutil"
)

func TestRunEndToEnd(t *testing.T) {
	g := testutil.RequiresVM(t)
	bin := buildVessel(t)
	cfg := filepath.Join(t.TempDir(), "configuration.toml")
	if err := os.WriteFile(cfg, g.Config(""), 0o644); err != nil {
		t.Fatal(err)
	}
	root, err := os.MkdirTemp("", "vrun")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(root)
	// Searchable, as the default state root is: the jailed VMM's ids (on by default)
	// reach their export by path.
	if err := os.Chmod(root, 0o711); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name     string
		args     []string
		stdin    string
		wantCode int
		wantOut  string
	}{
		{"default bundle", []string{"d1"}, "", 0, "Hello from a container in a Vessel VM\n"},
		{"exit code", []string{"d2", "sh", "-c", "exit 7"}, "", 7, ""},
		{"stdin", []string{"d3", "sh", "-c", "tr a-z A-Z"}, "shout\n", 0, "SHOUT\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(bin, append([]string{"--root", root, "--config", cfg, "run"}, tc.args...)...)
			cmd.Stdin = strings.NewReader(tc.stdin)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.wantCode {
				t.Errorf("exit code: got %d, want %d (stderr: %s)", code, tc.wantCode, stderr.String())
			}
			if tc.wantOut != "" && !strings.HasPrefix(string(out), tc.wantOut) {
				t.Errorf("stdout: got %q, want prefix %q", out, tc.wantOut)
			}
			if m, _ := sharefs.MountsUnder(root); len(m) > 0 {
				t.Errorf("mounts left: %v", m)
			}
			for _, d := range []string{"sandboxes", "bundles", "containers", "s"} {
				entries, _ := os.ReadDir(filepath.Join(root, d))
				if len(entries) > 0 {
					t.Errorf("state left in %s: %v", d, entries)
				}
			}
		})
	}

}
