package rootless

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDetect(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	initial := write("initial", "         0          0 4294967295\n")
	podman := write("podman", "         0       1001          1\n")
	for _, tc := range []struct {
		name   string
		euid   int
		uidMap string
		want   bool
		why    string
	}{
		{"host root", 0, initial, false, ""},
		{"no user namespaces", 0, filepath.Join(dir, "absent"), false, ""},
		{"unprivileged user", 1001, initial, true, "running as uid 1001"},
		{"root of rootless podman's namespace", 0, podman, true, `running in a user namespace (uid_map "0 1001 1")`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, why := detect(tc.euid, tc.uidMap)
			if got != tc.want || why != tc.why {
				t.Errorf("detect: %v %q, want %v %q", got, why, tc.want, tc.why)
			}
		})
	}
}

func TestRuntimeDir(t *testing.T) {
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	if _, err := RuntimeDir(getenv); err == nil || !strings.Contains(err.Error(), "XDG_RUNTIME_DIR is not set") {
		t.Errorf("unset: %v", err)
	}
	env["XDG_RUNTIME_DIR"] = "run/user/1"
	if _, err := RuntimeDir(getenv); err == nil || !strings.Contains(err.Error(), "not an absolute path") {
		t.Errorf("relative: %v", err)
	}
	env["XDG_RUNTIME_DIR"] = "/run/user/1001"
	if got, err := RuntimeDir(getenv); err != nil || got != "/run/user/1001/vessel" {
		t.Errorf("got %q %v", got, err)
	}
}
