package testutil

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Containerd is a containerd daemon a test started on its own socket and directories.
type Containerd struct {
	Address string
	Dir     string
	cmd     *exec.Cmd
	done    chan error
	// BinDir is put first on the daemon's PATH (where the shim under test is).
	BinDir string
	env    []string
}

// StartContainerd starts the Debian containerd with its own root, state and sockets under
// a short temp dir, with binDir first on its PATH so it finds the shim under test. The
// daemon is stopped and its directories removed at test cleanup. extraEnv is added to the
// daemon's environment (and so the shims').
func StartContainerd(t *testing.T, binDir string, extraEnv ...string) *Containerd {
	t.Helper()
	bin, err := exec.LookPath("containerd")
	if err != nil {
		skipOrFail(t, "containerd not installed: %v", err)
	}
	dir, err := os.MkdirTemp("", "vctd")
	if err != nil {
		t.Fatal(err)
	}
	c := &Containerd{Address: filepath.Join(dir, "c.sock"), Dir: dir, BinDir: binDir, done: make(chan error, 1)}
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = %q
[ttrpc]
  address = %q
[debug]
  level = "debug"
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), c.Address, c.Address+".ttrpc")
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	c.env = append(os.Environ(), "PATH="+binDir+":"+os.Getenv("PATH"))
	c.env = append(c.env, extraEnv...)
	c.cmd = exec.Command(bin, "--config", cfgPath)
	c.cmd.Env = c.env
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.done <- c.cmd.Wait(); logf.Close() }()
	t.Cleanup(func() {
		c.stop(t)
		if t.Failed() {
			if data, err := os.ReadFile(filepath.Join(dir, "containerd.log")); err == nil {
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
	c.waitReady(t)
	return c
}

// waitReady waits until the daemon answers `ctr version`.
func (c *Containerd) waitReady(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := c.Ctr(context.Background(), "version"); err == nil {
			return
		}
		select {
		case err := <-c.done:
			t.Fatalf("containerd exited at start: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("containerd did not answer within 30s")
		}
		time.Sleep(50 * time.Millisecond) // polling a daemon's readiness; it has no ready event
	}
}

func (c *Containerd) stop(t *testing.T) {
	if c.cmd.Process == nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-c.done:
		logExit(t, err)
	case <-time.After(20 * time.Second):
		_ = c.cmd.Process.Kill()
		logExit(t, <-c.done)
	}
	c.cmd.Process = nil
}

func logExit(t *testing.T, err error) {
	if err != nil {
		t.Logf("containerd exited: %v", err)
	}
}

// Restart stops and starts the daemon with the same directories.
func (c *Containerd) Restart(t *testing.T) {
	t.Helper()
	c.stop(t)
	logf, err := os.OpenFile(filepath.Join(c.Dir, "containerd.log"), os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(c.cmd.Path, c.cmd.Args[1:]...)
	cmd.Env = c.env
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c.cmd = cmd
	c.done = make(chan error, 1)
	go func() { c.done <- cmd.Wait(); logf.Close() }()
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
	cmd := exec.CommandContext(ctx, "ctr", full...)
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
