package testutil

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/vessel-containers/vessel/internal/config"
)

// TestDaemonEnvNamesTestConfig checks that the shims of a test's containerd read the test's
// configuration: the one extraEnv names or one written for the guest image, never the
// VESSEL_CONFIG of the environment the tests run in.
func TestDaemonEnvNamesTestConfig(t *testing.T) {
	t.Setenv(config.EnvVar, "/etc/vessel/host.toml")
	t.Setenv("VESSEL_GUEST_DIR", "/guest")
	for _, tc := range []struct {
		name     string
		extraEnv []string
		want     string // the VESSEL_CONFIG value; "" for dir/vessel.toml
	}{
		{name: "default"},
		{name: "named by the test", extraEnv: []string{"A=1", config.EnvVar + "=/test.toml"}, want: "/test.toml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			env, err := daemonEnv(dir, "/shims", tc.extraEnv)
			if err != nil {
				t.Fatal(err)
			}
			want := tc.want
			if want == "" {
				want = filepath.Join(dir, "vessel.toml")
			}
			var got []string
			for _, kv := range env {
				if v, ok := strings.CutPrefix(kv, config.EnvVar+"="); ok {
					got = append(got, v)
				}
			}
			if len(got) != 1 || got[0] != want {
				t.Fatalf("%s in the daemon's environment: got %q, want only %q", config.EnvVar, got, want)
			}
			if tc.want != "" {
				return
			}
			c, err := config.LoadFile(want)
			if err != nil {
				t.Fatal(err)
			}
			if c.Hypervisor.Kernel != "/guest/vmlinux" || c.Hypervisor.Initrd != "/guest/initramfs.img" {
				t.Errorf("written configuration boots kernel %s, initrd %s; want those in /guest", c.Hypervisor.Kernel, c.Hypervisor.Initrd)
			}
		})
	}
}
