package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli/v2"

	"github.com/vessel-containers/vessel/internal/containerid"
	"github.com/vessel-containers/vessel/internal/hostcgroup"
	"github.com/vessel-containers/vessel/internal/oci"
	"github.com/vessel-containers/vessel/internal/shimclient"
	"github.com/vessel-containers/vessel/internal/store"
)

func deleteCommand() *cli.Command {
	return &cli.Command{
		Name:      "delete",
		Usage:     "delete any resources held by the container, often used with detached containers",
		ArgsUsage: "<container-id>",
		Description: `The delete command removes a stopped (or created) container: the container in the VM,
and, for the last container of its sandbox, the VM and the shim; then the poststop hooks
run on the host and the container's state under --root is removed.

With --force a running or paused container is killed first. When the shim or the VM died,
delete (with or without --force) cleans up what they left: the VM process, shared-fs
mounts, sockets and state. Deleting a container that does not exist is an error, except
with --force.`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "forcibly delete the container if it is still running (uses SIGKILL)"},
		},
		Action: containerAction(func(c *cli.Context, r *ociRuntime, id string) error {
			return r.delete(c.Context, id, c.Bool("force"))
		}),
	}
}

// standInExitTimeout bounds how long delete waits for a stand-in to exit once its
// process is gone.
const standInExitTimeout = 10 * time.Second

func (r *ociRuntime) delete(ctx context.Context, id string, force bool) error {
	if err := containerid.Validate(id); err != nil {
		return err
	}
	lock, err := r.store.Lock(id)
	if errdefs.IsNotFound(err) {
		if force {
			return nil
		}
		return fmt.Errorf("container %s does not exist: %w", id, errdefs.ErrNotFound)
	}
	if err != nil {
		return err
	}
	defer lock.Unlock()
	c, err := r.store.Load(id)
	if errdefs.IsNotFound(err) {
		// A create that died before saving anything: only the directory is left.
		return r.store.Remove(id)
	}
	if err != nil {
		return err
	}
	st := r.statusOf(ctx, c)
	if (st.status == specs.StateRunning || st.status == oci.StatePaused) && !force {
		return fmt.Errorf("cannot delete container %s that is not stopped: %s", id, st.status)
	}
	r.destroy(ctx, c)
	r.runPoststop(ctx, c)
	var errs []error
	if c.OwnedBundle && strings.HasPrefix(c.Bundle, r.bundlesDir()+string(filepath.Separator)) {
		if err := os.RemoveAll(c.Bundle); err != nil {
			errs = append(errs, fmt.Errorf("remove bundle: %w", err))
		}
	}
	if err := r.store.Remove(id); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// destroy removes the container from its shim (which kills it if it runs) and, for the
// last container of the sandbox, ends the shim and the VM; when the shim is gone it cleans
// up after it. The stand-in process exits once its process is gone.
func (r *ociRuntime) destroy(ctx context.Context, c *store.Container) {
	ctx, cancel := context.WithTimeout(ctx, shimCallTimeout)
	defer cancel()
	r.evictMonitor(ctx, c)
	cl, err := r.dial(ctx, c)
	if err == nil {
		_, err = cl.Delete(ctx, &taskAPI.DeleteRequest{ID: c.ID})
		if err != nil && !errdefs.IsNotFound(err) {
			log.G(ctx).WithError(err).Warn("delete container in shim")
		}
		r.releaseShim(ctx, c, cl)
		cl.Close()
	} else {
		log.G(ctx).WithError(err).Debug("shim gone; cleaning up after it")
		r.cleanupDeadShim(ctx, c)
	}
	if c.Pid != os.Getpid() && !waitGone(c.Pid, c.PidStart, standInExitTimeout) {
		log.G(ctx).WithField("pid", c.Pid).Warn("stand-in process did not exit; killing it")
		killAndWait(c.Pid, c.PidStart, 5*time.Second)
	}
}

// evictMonitor moves a container's monitor that still runs out of the sandbox's cgroups
// (host.go's placeIn) into this process's, before the sandbox's cgroup is removed with the
// sandbox's last container; a monitor that deletes its own container (--rm) left them
// already.
func (r *ociRuntime) evictMonitor(ctx context.Context, c *store.Container) {
	if c.Pid == os.Getpid() || !alive(c.Pid, c.PidStart) {
		return
	}
	own, err := hostcgroup.Own()
	if err == nil {
		err = hostcgroup.Place(c.Pid, own)
	}
	if err != nil && alive(c.Pid, c.PidStart) {
		log.G(ctx).WithError(err).WithField("pid", c.Pid).Warn("move the container's monitor out of the sandbox's cgroup")
	}
}

// cleanupDeadShim removes what a dead (or hung) shim left: the shim process if it still
// runs and, for the sandbox's last container, the VM, its mounts, state and the socket,
// which the shim binary's delete action removes for the sandbox's id, as containerd has a
// dead shim's binary clean up behind it. The container's bundle tells the shim which
// sandbox the container belongs to; a pod container's does not name the sandbox's own
// container, so the action then goes without one and takes the id as the sandbox's.
func (r *ociRuntime) cleanupDeadShim(ctx context.Context, c *store.Container) {
	if c.ShimPid > 0 {
		killAndWait(c.ShimPid, c.ShimPidStart, 5*time.Second)
	}
	if r.othersInSandbox(c) {
		return
	}
	bin, err := shimclient.FindBinary()
	if err != nil {
		log.G(ctx).WithError(err).Warn("clean up sandbox")
		return
	}
	cfg := r.shimConfig(bin, c)
	if c.SandboxID != c.ID {
		cfg.ID, cfg.Bundle = c.SandboxID, ""
	}
	if err := shimclient.Delete(ctx, cfg); err != nil {
		log.G(ctx).WithError(err).Warn("clean up sandbox")
	}
}
