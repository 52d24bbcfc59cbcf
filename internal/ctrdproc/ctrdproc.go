// Package ctrdproc runs a containerd process on a private directory: its own root, state,
// gRPC and ttrpc sockets, config and debug log, so that tests (internal/testutil) and the
// benchmark (bench/internal/ctrd) drive a daemon of their own instead of the host's. The
// caller owns the directory and chooses the daemon's environment (where its shims are).
package ctrdproc

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vessel-containers/vessel/internal/config"
	"github.com/vessel-containers/vessel/internal/jail"
)

// readyTimeout bounds how long WaitReady waits for the daemon to answer.
const readyTimeout = 30 * time.Second

// stopTimeout is how long Stop waits after SIGTERM before it kills the daemon.
const stopTimeout = 20 * time.Second

// Daemon is a containerd process on its own directory. Start, WaitReady and Stop are
// called by one goroutine, the daemon's owner.
type Daemon struct {
	// Address is the daemon's gRPC socket (dir/c.sock); ttrpc listens at Address.ttrpc.
	Address string
	// LogPath is the daemon's log (dir/containerd.log), debug level, which also receives
	// its shims' logs. Every Start appends to it.
	LogPath string

	bin     string
	ctr     string // the ctr that WaitReady asks
	cfgPath string
	env     []string

	cmd     *exec.Cmd     // nil when not running
	exited  chan struct{} // closed once cmd exited; exitErr is set before
	exitErr error
}

// Environ is an environment for a daemon whose shims are in binDir: the caller's own
// without $VESSEL_CONFIG (a shim reads the configuration its test or benchmark names, never
// the one the caller's shell points at), binDir first on PATH, then extra.
func Environ(binDir string, extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, config.EnvVar+"=") && !strings.HasPrefix(kv, "PATH=") {
			env = append(env, kv)
		}
	}
	env = append(env, "PATH="+binDir+":"+os.Getenv("PATH"))
	return append(env, extra...)
}

// New writes dir/config.toml (root dir/root, state dir/state, the CRI and tracing plugins
// disabled) and returns a daemon that is not running yet. bin is the containerd binary,
// env the daemon's whole environment, which its shims inherit.
func New(bin, dir string, env []string) (*Daemon, error) {
	return newDaemon(bin, "ctr", dir, env, 2, `"io.containerd.grpc.v1.cri", `, "")
}

// NewVersion2 is New for a containerd 2.x binary bin and its ctr: its CRI plugins (split
// into several in 2.x) are disabled too, and extra (plugin sections, e.g. a snapshotter's)
// is appended to the daemon's config.
func NewVersion2(bin, ctr, dir string, env []string, extra string) (*Daemon, error) {
	return newDaemon(bin, ctr, dir, env, 2, `"io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime", "io.containerd.podsandbox.controller.v1.podsandbox", `, extra)
}

// NewCRIVersion2 is NewCRI for a containerd 2.x binary bin and its ctr: the daemon's
// config is version 3, and cri is the TOML of the CRI plugins' sections in that version's
// layout (io.containerd.cri.v1.images, io.containerd.cri.v1.runtime,
// io.containerd.grpc.v1.cri). NRI is disabled: its socket is a fixed host path that
// another daemon may hold.
func NewCRIVersion2(bin, ctr, dir string, env []string, cri string) (*Daemon, error) {
	return newDaemon(bin, ctr, dir, env, 3, `"io.containerd.nri.v1.nri", `, cri)
}

// NewCRI is New with the CRI plugin enabled: cri is the TOML of its plugin section
// (`[plugins."io.containerd.grpc.v1.cri"]` and below), appended to the daemon's config.
func NewCRI(bin, dir string, env []string, cri string) (*Daemon, error) {
	return newDaemon(bin, "ctr", dir, env, 2, "", cri)
}

// newDaemon writes a config of the given version with the plugins in disabled (a TOML list
// prefix, each entry followed by ", ") disabled too, and extra appended.
func newDaemon(bin, ctr, dir string, env []string, version int, disabled, extra string) (*Daemon, error) {
	d := &Daemon{
		Address: filepath.Join(dir, "c.sock"),
		LogPath: filepath.Join(dir, "containerd.log"),
		bin:     bin,
		ctr:     ctr,
		cfgPath: filepath.Join(dir, "config.toml"),
		env:     env,
	}
	cfg := fmt.Sprintf(`version = %d
root = %q
state = %q
disabled_plugins = [%s"io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = %q
[ttrpc]
  address = %q
[debug]
  level = "debug"
%s`, version, filepath.Join(dir, "root"), filepath.Join(dir, "state"), disabled, d.Address, d.Address+".ttrpc", extra)
	if err := os.WriteFile(d.cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, fmt.Errorf("containerd config: %w", err)
	}
	return d, nil
}

// Start starts containerd with its output going to LogPath. The daemon gets its own
// process group, so that a Ctrl-C in the terminal reaches only its owner, which stops it
// in order; the parent-death signal covers an owner that dies without cleaning up. After
// Stop, Start starts it again on the same directory.
func (d *Daemon) Start() error {
	if d.cmd != nil {
		return fmt.Errorf("start containerd: already running (pid %d)", d.cmd.Process.Pid)
	}
	logf, err := os.OpenFile(d.LogPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("containerd log: %w", err)
	}
	cmd := exec.Command(d.bin, "--config", d.cfgPath)
	cmd.Env = d.env
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	release, err := jail.StartPinned(cmd) // Pdeathsig follows the forking thread
	if err != nil {
		_ = logf.Close()
		return fmt.Errorf("start containerd: %w", err)
	}
	exited := make(chan struct{})
	d.cmd, d.exited, d.exitErr = cmd, exited, nil
	go func() { // owner: Daemon; ends when containerd exits (Stop)
		defer release()
		d.exitErr = cmd.Wait()
		_ = logf.Close()
		close(exited)
	}()
	return nil
}

// WaitReady polls `ctr version` until the started daemon answers. It fails if the daemon
// exits first or does not answer within 30s.
func (d *Daemon) WaitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	for {
		ping := exec.CommandContext(ctx, d.ctr, "--address", d.Address, "version")
		ping.Env = d.env
		if ping.Run() == nil {
			return nil
		}
		select {
		case <-d.exited:
			return fmt.Errorf("containerd exited at start (%s; see %s)", d.cmd.ProcessState, d.LogPath)
		case <-ctx.Done():
			return fmt.Errorf("containerd did not answer within %s (see %s): %w", readyTimeout, d.LogPath, ctx.Err())
		case <-time.After(50 * time.Millisecond): // containerd has no readiness event
		}
	}
}

// Stop sends containerd SIGTERM, kills it if it has not exited within 20s, and returns
// its exit error. A daemon that is not running is left alone (nil).
func (d *Daemon) Stop() error {
	if d.cmd == nil {
		return nil
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(stopTimeout):
		_ = d.cmd.Process.Kill()
		<-d.exited
	}
	d.cmd = nil
	return d.exitErr
}
