package ctrdproc

import (
	"os"
	"path/filepath"
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
