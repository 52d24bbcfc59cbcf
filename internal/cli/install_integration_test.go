package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/vessel-containers/vessel/internal/ctrdproc"
	"github.com/vessel-containers/vessel/internal/nodeinstall"
	"github.com/vessel-containers/vessel/internal/testutil"
)

// TestInstallContainerd writes the vessel handler into a private containerd's
// configuration with `vessel install --config` (after a --dry-run that must change
// nothing), with a release --from copies into a temporary prefix, guest directory and
// Vessel configuration, starts that containerd, and checks that its CRI plugin lists the
// handler (and still has runc and the user's own CRI setting), then `vessel uninstall`
// must put back the configuration byte for byte and remove what --from added. containerd 1.6 gets the handler appended to its
// configuration; containerd 2.x, whose configuration imports conf.d/*.toml, a drop-in.
func TestInstallContainerd(t *testing.T) {
	testutil.RequiresIntegration(t)
	testutil.RequiresRoot(t)
	crictl := os.Getenv("CRICTL_BIN")
	if crictl == "" {
		t.Skip("CRICTL_BIN names no crictl binary (make critest builds one)")
	}
	vessel := buildVessel(t)

	t.Run("containerd 1.6", func(t *testing.T) {
		bin, err := exec.LookPath("containerd")
		if err != nil {
			t.Skipf("containerd not installed: %v", err)
		}
		installInto(t, vessel, crictl, false, func(dir string, env []string) (*ctrdproc.Daemon, error) {
			return ctrdproc.NewCRI(bin, dir, env, "[plugins.\"io.containerd.grpc.v1.cri\"]\n  restrict_oom_score_adj = true\n")
		})
	})
	t.Run("containerd 2.x", func(t *testing.T) {
		bin, ctr := testutil.RequiresContainerd2(t)
		installInto(t, vessel, crictl, true, func(dir string, env []string) (*ctrdproc.Daemon, error) {
			d, err := ctrdproc.NewCRIVersion2(bin, ctr, dir, env, "[plugins.'io.containerd.cri.v1.runtime']\n  restrict_oom_score_adj = true\n")
			if err != nil {
				return nil, err
			}
			// The user's configuration imports conf.d: the handler goes into a drop-in there.
			cfg := filepath.Join(dir, "config.toml")
			data, err := os.ReadFile(cfg)
			if err != nil {
				return nil, err
			}
			return d, os.WriteFile(cfg, append([]byte("imports = ['conf.d/*.toml']\n"), data...), 0o600)
		})
	})
}

// installInto runs install, the daemon and uninstall on the configuration newDaemon writes.
func installInto(t *testing.T, vessel, crictl string, wantDropIn bool, newDaemon func(dir string, env []string) (*ctrdproc.Daemon, error)) {
	dir, err := os.MkdirTemp("", "vinst")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Unmount(filepath.Join(dir, "root"), syscall.MNT_DETACH)
		os.RemoveAll(dir)
	})
	d, err := newDaemon(dir, ctrdproc.Environ(filepath.Dir(vessel)))
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "config.toml")
	before, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(vessel, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("vessel %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}

	dry := run("install", "--config", cfg, "--dry-run")
	if !strings.Contains(dry, `runtime_type = "io.containerd.vessel.v2"`) {
		t.Errorf("install --dry-run printed no handler:\n%s", dry)
	}
	if got, err := os.ReadFile(cfg); err != nil || !bytes.Equal(got, before) {
		t.Fatalf("install --dry-run changed %s (%v)", cfg, err)
	}
	if _, err := os.Stat(nodeinstall.StatePath(cfg)); err == nil {
		t.Fatal("install --dry-run recorded an install")
	}

	// The release --from copies; containerd does not start the shim here, so stand-ins do.
	rel := filepath.Join(dir, "release")
	if err := os.Mkdir(rel, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range append(append([]string{}, nodeinstall.Binaries...), nodeinstall.GuestFiles...) {
		if err := os.WriteFile(filepath.Join(rel, name), []byte("release "+name), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	vesselConfig := filepath.Join(dir, "etc-vessel", "node.toml")
	added := []string{filepath.Join(dir, "prefix"), filepath.Join(dir, "guest"), filepath.Dir(vesselConfig)}
	out := run("install", "--config", cfg, "--vessel-config", vesselConfig,
		"--from", rel, "--prefix", added[0], "--guest-dir", added[1])
	for _, p := range []string{added[0] + "/bin/containerd-shim-vessel-v2", added[1] + "/vmlinux", vesselConfig} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("install --from: %v", err)
		}
	}
	t.Logf("vessel install:\n%s", out)
	if _, err := os.Stat(nodeinstall.DropInPath(cfg)); (err == nil) != wantDropIn {
		t.Errorf("drop-in %s: %v, want it to exist: %v", nodeinstall.DropInPath(cfg), err, wantDropIn)
	}

	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Stop() })
	if err := d.WaitReady(context.Background()); err != nil {
		t.Fatal(err)
	}
	info, err := exec.Command(crictl, "--runtime-endpoint", "unix://"+d.Address, "info").Output()
	if err != nil {
		log, _ := os.ReadFile(d.LogPath)
		t.Fatalf("crictl info: %v\ncontainerd log:\n%s", err, log)
	}
	var status struct {
		Config struct {
			Containerd struct {
				Runtimes map[string]struct {
					RuntimeType                  string         `json:"runtimeType"`
					PodAnnotations               []string       `json:"podAnnotations"`
					PrivilegedWithoutHostDevices bool           `json:"privileged_without_host_devices"`
					Options                      map[string]any `json:"options"`
				} `json:"runtimes"`
			} `json:"containerd"`
			RestrictOOMScoreAdj bool `json:"restrictOOMScoreAdj"`
		} `json:"config"`
	}
	if err := json.Unmarshal(info, &status); err != nil {
		t.Fatalf("crictl info: %v\n%s", err, info)
	}
	rt := status.Config.Containerd.Runtimes
	v, ok := rt["vessel"]
	if !ok {
		t.Fatalf("the CRI plugin has no vessel handler:\n%s", info)
	}
	if v.RuntimeType != nodeinstall.RuntimeType || !reflect.DeepEqual(v.PodAnnotations, nodeinstall.PodAnnotations) ||
		!v.PrivilegedWithoutHostDevices || v.Options["ConfigPath"] != vesselConfig {
		t.Errorf("vessel handler as the CRI plugin has it: %+v", v)
	}
	if _, ok := rt["runc"]; !ok {
		t.Errorf("the CRI plugin lost its runc handler: %v", rt)
	}
	if !status.Config.RestrictOOMScoreAdj {
		t.Error("the CRI plugin lost the configuration's restrict_oom_score_adj = true")
	}
	if err := d.Stop(); err != nil {
		t.Logf("containerd stop: %v", err)
	}

	run("uninstall", "--config", cfg)
	after, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(after, before) {
		t.Errorf("after uninstall %s is\n%s\nwant\n%s", cfg, after, before)
	}
	for _, p := range append([]string{nodeinstall.StatePath(cfg), nodeinstall.DropInPath(cfg), filepath.Dir(nodeinstall.DropInPath(cfg))}, added...) {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("uninstall left %s", p)
		}
	}
}
