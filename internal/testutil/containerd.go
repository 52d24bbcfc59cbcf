package testutil

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/vessel-containers/vessel/internal/config"
	"github.com/vessel-containers/vessel/internal/ctrdproc"
)

// Containerd is a containerd daemon a test started on its own socket and directories.
type Containerd struct {
	Address string
	Dir     string
	// BinDir is put first on the daemon's PATH (where the shim under test is).
	BinDir string
	// CtrPath is the ctr that Ctr and CtrCmd run: the daemon's own version.
	CtrPath string
	env     []string
	proc    *ctrdproc.Daemon
}

// Containerd2Dir is where hack/install-deps.sh puts containerd 2.x's containerd and ctr,
// off PATH, so that Debian's containerd stays the default.
const Containerd2Dir = "/usr/local/libexec/vessel/containerd2"

// StartContainerd starts the Debian containerd with its own root, state and sockets under
// a short temp dir, with binDir first on its PATH so it finds the shim under test. The
// daemon is stopped and its directories removed at test cleanup. extraEnv is added to the
// daemon's environment (and so the shims').
//
// The shims read the configuration that a `ctr run --runtime-config-path` or extraEnv's
// VESSEL_CONFIG names, and otherwise vessel.toml in the daemon's directory, written for
// the guest image in GuestDir(): never the host's /etc/vessel/configuration.toml nor the
// VESSEL_CONFIG of the shell that runs the tests.
func StartContainerd(t *testing.T, binDir string, extraEnv ...string) *Containerd {
	t.Helper()
	bin, err := exec.LookPath("containerd")
	if err != nil {
		skipOrFail(t, "containerd not installed: %v", err)
	}
	return startContainerd(t, binDir, "ctr", extraEnv, func(dir string, env []string) (*ctrdproc.Daemon, error) {
		return ctrdproc.New(bin, dir, env)
	})
}

// StartContainerd2 is StartContainerd with containerd 2.x from Containerd2Dir (and its
// ctr), with config (plugin sections, e.g. a snapshotter's) appended to the daemon's
// configuration. When containerd 2.x is not installed the test is skipped locally and
// fails in CI.
func StartContainerd2(t *testing.T, binDir, config string, extraEnv ...string) *Containerd {
	t.Helper()
	bin, ctr := RequiresContainerd2(t)
	return startContainerd(t, binDir, ctr, extraEnv, func(dir string, env []string) (*ctrdproc.Daemon, error) {
		return ctrdproc.NewVersion2(bin, ctr, dir, env, config)
	})
}

// RequiresContainerd2 returns the paths of containerd 2.x's containerd and ctr in
// Containerd2Dir; when they are missing the test is skipped locally and fails in CI.
func RequiresContainerd2(t testing.TB) (bin, ctr string) {
	t.Helper()
	bin, ctr = filepath.Join(Containerd2Dir, "containerd"), filepath.Join(Containerd2Dir, "ctr")
	for _, p := range []string{bin, ctr} {
		if _, err := os.Stat(p); err != nil {
			skipOrFail(t, "containerd 2.x is not installed (hack/install-deps.sh builds it into %s): %v", Containerd2Dir, err)
		}
	}
	return bin, ctr
}

// startContainerd starts the daemon that newDaemon makes on a new directory.
func startContainerd(t *testing.T, binDir, ctr string, extraEnv []string, newDaemon func(dir string, env []string) (*ctrdproc.Daemon, error)) *Containerd {
	t.Helper()
	dir, err := os.MkdirTemp("", "vctd")
	if err != nil {
		t.Fatal(err)
	}
	env, err := daemonEnv(dir, binDir, extraEnv)
	if err != nil {
		os.RemoveAll(dir)
		t.Fatal(err)
	}
	proc, err := newDaemon(dir, env)
	if err != nil {
		os.RemoveAll(dir)
		t.Fatal(err)
	}
	c := &Containerd{Address: proc.Address, Dir: dir, BinDir: binDir, CtrPath: ctr, env: env, proc: proc}
	t.Cleanup(func() {
		c.stop(t)
		if t.Failed() {
			if data, err := os.ReadFile(proc.LogPath); err == nil {
				lines := strings.Split(string(data), "\n")
				if len(lines) > 400 {
					lines = lines[len(lines)-400:]
				}
				t.Logf("containerd log tail:\n%s", strings.Join(lines, "\n"))
			}
		}
		_ = syscall.Unmount(filepath.Join(dir, "root"), syscall.MNT_DETACH)
		os.RemoveAll(dir)
	})
	if err := proc.Start(); err != nil {
		t.Fatal(err)
	}
	c.waitReady(t)
	return c
}

// Log is what the daemon logged so far (with its shims' logs, at debug level).
func (c *Containerd) Log(t testing.TB) string {
	t.Helper()
	data, err := os.ReadFile(c.proc.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// daemonEnv is the environment of a daemon in dir with the shims in binDir: extraEnv, and a
// VESSEL_CONFIG naming dir/vessel.toml (written here) unless extraEnv names one.
func daemonEnv(dir, binDir string, extraEnv []string) ([]string, error) {
	if !slices.ContainsFunc(extraEnv, func(kv string) bool { return strings.HasPrefix(kv, config.EnvVar+"=") }) {
		cfg := filepath.Join(dir, "vessel.toml")
		if err := os.WriteFile(cfg, GuestIn(GuestDir()).Config(""), 0o644); err != nil {
			return nil, fmt.Errorf("shim configuration: %w", err)
		}
		extraEnv = append(slices.Clip(extraEnv), config.EnvVar+"="+cfg)
	}
	return ctrdproc.Environ(binDir, extraEnv...), nil
}

// waitReady waits until the daemon answers `ctr version`.
func (c *Containerd) waitReady(t *testing.T) {
	t.Helper()
	if err := c.proc.WaitReady(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func (c *Containerd) stop(t *testing.T) {
	if err := c.proc.Stop(); err != nil {
		t.Logf("containerd exited: %v", err)
	}
}

// Restart stops and starts the daemon with the same directories.
func (c *Containerd) Restart(t *testing.T) {
	t.Helper()
	c.stop(t)
	if err := c.proc.Start(); err != nil {
		t.Fatal(err)
	}
	c.waitReady(t)
}

// Ctr runs ctr against the daemon in namespace "vessel-test" and returns its combined output.
func (c *Containerd) Ctr(ctx context.Context, args ...string) (string, error) {
	cmd := c.CtrCmd(ctx, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// CtrCmd prepares a ctr command against the daemon.
func (c *Containerd) CtrCmd(ctx context.Context, args ...string) *exec.Cmd {
	full := append([]string{"--address", c.Address, "--namespace", "vessel-test"}, args...)
	cmd := exec.CommandContext(ctx, c.CtrPath, full...)
	cmd.Env = c.env
	return cmd
}

// Events streams `ctr events` lines until the test ends.
func (c *Containerd) Events(t *testing.T) <-chan string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := c.CtrCmd(ctx, "events")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 256)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	return lines
}
