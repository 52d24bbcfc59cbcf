package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/vessel-containers/vessel/internal/config"
)

// testApp is a minimal app with the global --config flag and the command under test.
func testApp(cmd *cli.Command, out *bytes.Buffer) *cli.App {
	return &cli.App{
		Name:           "vessel",
		Writer:         out,
		ErrWriter:      out,
		ExitErrHandler: func(*cli.Context, error) {},
		Flags:          []cli.Flag{&cli.StringFlag{Name: "config"}},
		Commands:       []*cli.Command{cmd},
	}
}

func TestEnvPrintsEffectiveConfig(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "c.toml")
	if err := os.WriteFile(file, []byte("[hypervisor]\ndefault_vcpus = 2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"vessel", "--config", file, "env"},
		{"vessel", "env", "--config", file},
		{"vessel", "--config", "/nonexistent", "env", "--config", file},
	} {
		t.Run(strings.Join(args[1:], " "), func(t *testing.T) {
			var out bytes.Buffer
			if err := testApp(EnvCommand(), &out).Run(args); err != nil {
				t.Fatalf("env: %v\n%s", err, out.String())
			}
			if !strings.Contains(out.String(), "from "+file) {
				t.Errorf("source not named:\n%s", out.String())
			}
			c, err := config.Parse(out.Bytes(), "env output")
			if err != nil {
				t.Fatalf("output is not a loadable configuration: %v\n%s", err, out.String())
			}
			if c.Hypervisor.DefaultVCPUs != 2 || c.Hypervisor.DefaultMemory != config.DefaultMemoryMiB {
				t.Errorf("printed %+v", c.Hypervisor)
			}
			// Unsupported keys and values are marked.
			for _, want := range []string{
				"# Not supported, only the default is accepted: the virtio-fs DAX window needs vhost-user-fs-pci cache-size, which QEMU 7.2 (Debian 12) does not have.\nvirtio_fs_cache_size = ",
				"# Supported: only \"qemu\"; refused: \"firecracker\" (driver firecracker is not built into this Vessel)",
			} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("output lacks %q:\n%s", want, out.String())
				}
			}
		})
	}
}

func TestEnvBadConfig(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{"[hypervisor]\nmsize_9p = 1\n", "hypervisor.msize_9p = 1: out of range"},
		{"[hypervisor]\ndriver = \"firecracker\"\n", `hypervisor.driver = "firecracker": not supported: driver firecracker is not built into this Vessel`},
		{"[runtime]\ninternetworking_model = \"bridged\"\n", `runtime.internetworking_model = "bridged": not a known value`},
	} {
		file := filepath.Join(t.TempDir(), "c.toml")
		if err := os.WriteFile(file, []byte(tc.body), 0o600); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		err := testApp(EnvCommand(), &out).Run([]string{"vessel", "env", "--config", file})
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), file) {
			t.Errorf("%q: got %v, want an error naming %s and containing %q", tc.body, err, file, tc.want)
		}
	}
}
