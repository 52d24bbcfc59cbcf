package ctrdproc

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestNewConfig checks that everything the daemon writes is below its directory.
func TestNewConfig(t *testing.T) {
	dir := t.TempDir()
	d, err := New("/usr/bin/containerd", dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := d.Address, filepath.Join(dir, "c.sock"); got != want {
		t.Errorf("Address = %q, want %q", got, want)
	}
	if got, want := d.LogPath, filepath.Join(dir, "containerd.log"); got != want {
		t.Errorf("LogPath = %q, want %q", got, want)
	}
	data, err := os.ReadFile(filepath.Join(dir, "config.toml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`root = "` + dir + `/root"`,
		`state = "` + dir + `/state"`,
		`address = "` + dir + `/c.sock"`,
		`address = "` + dir + `/c.sock.ttrpc"`,
		`"io.containerd.grpc.v1.cri"`,
	} {
		if !strings.Contains(string(data), want) {
			t.Errorf("config.toml lacks %s:\n%s", want, data)
		}
	}
}

func TestStopNotRunning(t *testing.T) {
	d, err := New("/usr/bin/containerd", t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Stop(); err != nil {
		t.Errorf("Stop of a daemon never started: %v", err)
	}
}

func TestEnviron(t *testing.T) {
	t.Setenv("VESSEL_CONFIG", "/etc/host.toml")
	t.Setenv("PATH", "/usr/bin")
	got := Environ("/shims", "VESSEL_CONFIG=/test.toml")
	var paths, configs []string
	for _, kv := range got {
		switch {
		case strings.HasPrefix(kv, "PATH="):
			paths = append(paths, kv)
		case strings.HasPrefix(kv, "VESSEL_CONFIG="):
			configs = append(configs, kv)
		}
	}
	if want := []string{"PATH=/shims:/usr/bin"}; !slices.Equal(paths, want) {
		t.Errorf("PATH: got %q, want %q", paths, want)
	}
	if want := []string{"VESSEL_CONFIG=/test.toml"}; !slices.Equal(configs, want) {
		t.Errorf("VESSEL_CONFIG: got %q, want only the extra %q", configs, want)
	}
}

// TestNewCRIConfig checks that NewCRI enables the CRI plugin and appends its section.
func TestNewCRIConfig(t *testing.T) {
	dir := t.TempDir()
	section := "[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"pause\"\n"
	if _, err := NewCRI("/usr/bin/containerd", dir, nil, section); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "config.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), `"io.containerd.grpc.v1.cri",`) {
		t.Errorf("config.toml disables the CRI plugin:\n%s", data)
	}
	if !strings.HasSuffix(string(data), section) {
		t.Errorf("config.toml does not end with the CRI section:\n%s", data)
	}
}
