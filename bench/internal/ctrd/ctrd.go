// Package ctrd runs a private containerd for the benchmark harness: its own root, state,
// sockets, FIFOs, runc root and log under one fresh directory, a chosen directory first on
// its PATH (where the shim under test is), and ctr as the client. Stop removes everything
// the daemon and its shims made, including containers, shims and VMs that a failed or
// interrupted run left behind.
//
// The daemon process itself is run by internal/ctrdproc, as internal/testutil's is for
// tests; this package adds the namespace, the FIFO and runc directories and the cleanup.
package ctrd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/log"

	"github.com/vessel-containers/vessel/internal/ctrdproc"
)

// Options configure Start.
type Options struct {
	// Parent is where the daemon's directory is created (default os.TempDir()). Unix
	// socket paths are limited to 107 bytes, so keep it short.
	Parent string
	// BinDir is put first on the daemon's PATH (where the shim under test is).
	BinDir string
	// Namespace is the containerd namespace ctr uses (default "vbench-<unique>").
	Namespace string
}

// Daemon is a running private containerd.
type Daemon struct {
	// Address is the daemon's gRPC socket.
	Address string
	// Dir holds everything the daemon uses; Stop removes it.
	Dir string
	// LogPath is the daemon's log, which also receives its shims' logs (debug level).
	LogPath string
	// FIFODir is passed to ctr for the stdio FIFOs, RuncRoot to runc.
	FIFODir   string
	RuncRoot  string
	Namespace string

	env  []string
	proc *ctrdproc.Daemon // nil unless containerd was started and not yet stopped
}

// Start starts the Debian containerd on its own directories and waits until it answers.
func Start(ctx context.Context, opts Options) (_ *Daemon, retErr error) {
	bin, err := exec.LookPath("containerd")
	if err != nil {
		return nil, fmt.Errorf("containerd is not installed (apt-get install containerd): %w", err)
	}
	if _, err := exec.LookPath("ctr"); err != nil {
		return nil, fmt.Errorf("ctr is not installed: %w", err)
	}
	dir, err := os.MkdirTemp(opts.Parent, "vb")
	if err != nil {
		return nil, fmt.Errorf("containerd dir: %w", err)
	}
	// Searchable, as /run/vessel is: a jailed VMM (on by default) reaches its sandbox's
	// export below it by path.
	if err := os.Chmod(dir, 0o711); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("containerd dir: %w", err)
	}
	if opts.Namespace == "" {
		// Unique per daemon: runc's cgroups (/<namespace>/<id>) of concurrent runs stay apart.
		opts.Namespace = "vbench-" + strings.TrimPrefix(filepath.Base(dir), "vb")
	}
	d := &Daemon{
		Dir:       dir,
		FIFODir:   filepath.Join(dir, "fifo"),
		RuncRoot:  filepath.Join(dir, "runc"),
		Namespace: opts.Namespace,
	}
	defer func() {
		if retErr != nil {
			if err := d.Stop(context.WithoutCancel(ctx)); err != nil {
				log.G(ctx).WithError(err).Warn("clean up after failed containerd start")
			}
		}
	}()
	for _, sub := range []string{d.FIFODir, d.RuncRoot} {
		if err := os.MkdirAll(sub, 0o700); err != nil {
			return nil, fmt.Errorf("containerd dir: %w", err)
		}
	}
	d.env = ctrdproc.Environ(opts.BinDir)
	proc, err := ctrdproc.New(bin, dir, d.env)
	if err != nil {
		return nil, err
	}
	d.Address, d.LogPath = proc.Address, proc.LogPath
	if err := proc.Start(); err != nil {
		return nil, err
	}
	d.proc = proc
	if err := proc.WaitReady(ctx); err != nil {
		return nil, err
	}
	return d, nil
}

// CtrCmd prepares a ctr command against the daemon in its namespace.
func (d *Daemon) CtrCmd(ctx context.Context, args ...string) *exec.Cmd {
	full := append([]string{"--address", d.Address, "--namespace", d.Namespace}, args...)
	cmd := exec.CommandContext(ctx, "ctr", full...)
	cmd.Env = d.env
	// A cancelled ctr gets SIGTERM first so that it can remove its FIFOs.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// Ctr runs ctr and returns its combined output.
func (d *Daemon) Ctr(ctx context.Context, args ...string) (string, error) {
	out, err := d.CtrCmd(ctx, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// RemoveAllContainers kills and deletes every task and container in the namespace. It is
// the orderly part of the cleanup; Stop calls it and then sweeps what is left.
func (d *Daemon) RemoveAllContainers(ctx context.Context) error {
	out, err := d.Ctr(ctx, "containers", "ls", "-q")
	if err != nil {
		return err
	}
	var errs []error
	for _, id := range strings.Fields(out) {
		// "task delete -f" kills a running task; a missing task is not an error here.
		if _, err := d.Ctr(ctx, "task", "delete", "-f", id); err != nil && !strings.Contains(err.Error(), "not found") {
			errs = append(errs, err)
		}
		if _, err := d.Ctr(ctx, "containers", "delete", id); err != nil && !strings.Contains(err.Error(), "not found") {
			errs = append(errs, err)
		}
		removeShimSocket(d.Address, d.Namespace, id)
	}
	return errors.Join(errs...)
}

// Stop removes every container, stops the daemon, kills whatever process still refers to
// the daemon's directory (shims, VMs) or lives in the namespace's cgroups (runc containers),
// unmounts everything below the directory and removes it. It is safe to call on a daemon
// that failed to start and always runs every step.
func (d *Daemon) Stop(ctx context.Context) error {
	var errs []error
	if d.proc != nil {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		if err := d.RemoveAllContainers(rctx); err != nil {
			errs = append(errs, fmt.Errorf("remove containers: %w", err))
		}
		cancel()
		if exitErr := d.proc.Stop(); exitErr != nil {
			log.G(ctx).WithError(exitErr).Debug("containerd exited")
		}
		d.proc = nil
	}
	if err := sweep(d.Dir, d.Namespace); err != nil {
		errs = append(errs, err)
	}
	if err := unmountBelow(d.Dir); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(d.Dir); err != nil {
		errs = append(errs, fmt.Errorf("remove %s: %w", d.Dir, err))
	}
	return errors.Join(errs...)
}

// KeepLog copies the daemon's log to path (for a failed run's post-mortem) before Stop
// removes it.
func (d *Daemon) KeepLog(path string) error {
	data, err := os.ReadFile(d.LogPath)
	if err != nil {
		return fmt.Errorf("read containerd log: %w", err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("keep containerd log: %w", err)
	}
	return nil
}
