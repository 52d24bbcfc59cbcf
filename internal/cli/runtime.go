package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli/v2"

	"github.com/vessel-containers/vessel/internal/oci"
	"github.com/vessel-containers/vessel/internal/shimclient"
	"github.com/vessel-containers/vessel/internal/shimproto"
	"github.com/vessel-containers/vessel/internal/store"
)

// ociRuntime is what the OCI verbs share: the global flags, resolved.
type ociRuntime struct {
	root  string
	store store.Store
	// config is --config as an absolute path, or "" for the shim's search order.
	config    string
	debug     bool
	log       string
	logFormat string
	// systemdCgroup is --systemd-cgroup: linux.cgroupsPath is then "slice:prefix:name".
	systemdCgroup bool
}

func newRuntime(c *cli.Context) (*ociRuntime, error) {
	root, err := stateRoot(c)
	if err != nil {
		return nil, err
	}
	r := &ociRuntime{
		root:          root,
		store:         store.New(root),
		debug:         c.Bool("debug"),
		logFormat:     c.String("log-format"),
		systemdCgroup: c.Bool("systemd-cgroup"),
	}
	if p := configPath(c); p != "" {
		if r.config, err = filepath.Abs(p); err != nil {
			return nil, fmt.Errorf("--config: %w", err)
		}
	}
	if p := c.String("log"); p != "" {
		if r.log, err = filepath.Abs(p); err != nil {
			return nil, fmt.Errorf("--log: %w", err)
		}
	}
	return r, nil
}

// shimConfig is the shim binary's command line for container c: the CLI's namespace, the
// container's bundle, and flags that keep the shim's sandbox state (VM, shared-fs mounts)
// in ROOT/sandboxes, its socket in ROOT/s and its log in the container's state directory,
// which is also the shim's working directory, and that read direct-assigned volumes from
// ROOT/direct-volumes, and that leave the OCI hooks to the CLI.
func (r *ociRuntime) shimConfig(binary string, c *store.Container) shimclient.Config {
	dir := r.store.Dir(c.ID)
	return shimclient.Config{
		Binary: binary,
		Dir:    dir,
		Invocation: shimproto.Invocation{
			Namespace: shimclient.Namespace, ID: c.ID, Bundle: c.Bundle, Debug: r.debug,
			Options: shimproto.Options{
				SandboxRoot: r.sandboxRoot(),
				LogFile:     filepath.Join(dir, "shim.log"),
				SocketDir:   filepath.Join(r.root, "s"),
				// Where `vessel direct-volume` keeps its records for this --root.
				DirectVolumeRoot: filepath.Join(r.root, "direct-volumes"),
				// The CLI runs the OCI hooks at its verbs (create.go, start.go).
				CallerRunsHooks: true,
			},
		},
	}
}

// sandboxRoot holds the sandboxes' directories (the shim's SandboxRoot).
func (r *ociRuntime) sandboxRoot() string { return filepath.Join(r.root, "sandboxes") }

// bundlesDir holds the bundles `vessel run` makes when given none.
func (r *ociRuntime) bundlesDir() string { return filepath.Join(r.root, "bundles") }

// load reads a container's state; a missing container gives runc's "does not exist"
// message, which podman and conmon look for.
func (r *ociRuntime) load(id string) (*store.Container, error) {
	c, err := r.store.Load(id)
	if errdefs.IsNotFound(err) {
		return nil, fmt.Errorf("container %s does not exist: %w", id, errdefs.ErrNotFound)
	}
	return c, err
}

// lock takes a container's lock and loads its state.
func (r *ociRuntime) lock(id string) (*store.Container, *store.Lock, error) {
	l, err := r.store.Lock(id)
	if errdefs.IsNotFound(err) {
		return nil, nil, fmt.Errorf("container %s does not exist: %w", id, errdefs.ErrNotFound)
	}
	if err != nil {
		return nil, nil, err
	}
	c, err := r.load(id)
	if err != nil {
		l.Unlock()
		return nil, nil, err
	}
	return c, l, nil
}

// dial connects to the shim serving the container.
func (r *ociRuntime) dial(ctx context.Context, c *store.Container) (*shimclient.Client, error) {
	if c.ShimAddress == "" {
		return nil, fmt.Errorf("container %s has no shim: %w", c.ID, shimclient.ErrShimGone)
	}
	return shimclient.Dial(ctx, c.ShimAddress)
}

// withShim runs fn with a client of container id's shim while it holds the container's
// lock. check, given the container's status, refuses a state the verb cannot act in.
func (r *ociRuntime) withShim(ctx context.Context, id string, check func(specs.ContainerState) error, fn func(*shimclient.Client) error) error {
	ctr, lock, err := r.lock(id)
	if err != nil {
		return err
	}
	defer lock.Unlock()
	if err := check(r.statusOf(ctx, ctr).status); err != nil {
		return err
	}
	cl, err := r.dial(ctx, ctr)
	if err != nil {
		return err
	}
	defer cl.Close()
	return fn(cl)
}

// live is a container's status as the OCI verbs report it.
type live struct {
	status specs.ContainerState
	// pid is the stand-in process while the container exists (created, running, paused).
	pid int
	// exitStatus is the init process's status once stopped, when the shim still knows it.
	exitStatus uint32
}

// statusOf asks the shim for the container's status. A container is stopped when its
// shim is gone, when the shim says so, or when its stand-in process has died (conmon and
// podman watch that pid: its exit is the container's exit).
func (r *ociRuntime) statusOf(ctx context.Context, c *store.Container) live {
	stopped := live{status: specs.StateStopped}
	if c.Status == store.Creating {
		if r.store.Busy(c.ID) {
			return live{status: specs.StateCreating, pid: c.Pid}
		}
		return stopped // the vessel that was creating it died
	}
	cl, err := r.dial(ctx, c)
	if err != nil {
		return stopped
	}
	defer cl.Close()
	resp, err := cl.State(ctx, &taskAPI.StateRequest{ID: c.ID})
	if err != nil {
		log.G(ctx).WithError(err).Debug("state from shim")
		return stopped
	}
	var st specs.ContainerState
	switch resp.Status {
	case task.Status_CREATED:
		st = specs.StateCreated
	case task.Status_RUNNING:
		st = specs.StateRunning
	case task.Status_PAUSED, task.Status_PAUSING:
		st = oci.StatePaused
	default:
		return live{status: specs.StateStopped, exitStatus: resp.ExitStatus}
	}
	if !alive(c.Pid, c.PidStart) {
		return stopped
	}
	return live{status: st, pid: c.Pid}
}

// ociState is the state document hooks read on stdin.
func ociState(c *store.Container, status specs.ContainerState, pid int) specs.State {
	var ann map[string]string
	if c.Spec != nil {
		ann = c.Spec.Annotations
	}
	s := oci.State(c.ID, c.Bundle, status, pid, ann)
	if status == specs.StateCreating {
		s.Pid = pid
	}
	return s
}

// othersInSandbox reports whether containers other than c are recorded for c's sandbox:
// then its shim and VM outlive c.
func (r *ociRuntime) othersInSandbox(c *store.Container) bool {
	ids, err := r.store.List()
	if err != nil {
		return true
	}
	for _, id := range ids {
		if id == c.ID {
			continue
		}
		o, err := r.store.Load(id)
		if err == nil && o.SandboxID == c.SandboxID && o.ShimAddress == c.ShimAddress {
			return true
		}
	}
	return false
}

// shimExitTimeout bounds how long delete waits for a shim (and its VM) to end.
const shimExitTimeout = 30 * time.Second

// releaseShim asks the shim to exit once it holds no container and, when c was the last
// container of its sandbox, waits for it to be gone (so its socket and VM are too). A shim
// that does not exit in time is killed.
func (r *ociRuntime) releaseShim(ctx context.Context, c *store.Container, cl *shimclient.Client) {
	if _, err := cl.Shutdown(ctx, &taskAPI.ShutdownRequest{ID: c.ID}); err != nil && !errors.Is(err, shimclient.ErrShimGone) {
		log.G(ctx).WithError(err).Debug("shim shutdown")
	}
	if r.othersInSandbox(c) || c.ShimPid == 0 {
		return
	}
	if !waitGone(c.ShimPid, c.ShimPidStart, shimExitTimeout) {
		log.G(ctx).WithField("pid", c.ShimPid).Warn("shim did not exit; killing it")
		r.cleanupDeadShim(ctx, c)
	}
}

// fileExists reports whether path exists.
func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
