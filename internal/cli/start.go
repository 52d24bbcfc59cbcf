package cli

import (
	"context"
	"errors"
	"fmt"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli/v2"

	"github.com/vessel-containers/vessel/internal/hooks"
	"github.com/vessel-containers/vessel/internal/oci"
)

func startCommand() *cli.Command {
	return &cli.Command{
		Name:      "start",
		Usage:     "execute the user defined process in a created container",
		ArgsUsage: "<container-id>",
		Description: `The start command runs the process of a created container. startContainer hooks run in
the container, from its init in the guest just before the process (a failure ends the
container: its exit status is 255 and the error is on its stderr); poststart hooks run on
the host after the process started (a failure is logged as a warning).`,
		Action: containerAction(func(c *cli.Context, r *ociRuntime, id string) error {
			return r.start(c.Context, id)
		}),
	}
}

func (r *ociRuntime) start(ctx context.Context, id string) error {
	c, lock, err := r.lock(id)
	if err != nil {
		return err
	}
	defer lock.Unlock()
	switch st := r.statusOf(ctx, c); st.status {
	case specs.StateCreated:
	case specs.StateStopped:
		return errors.New("cannot start a container that has stopped")
	case specs.StateRunning, oci.StatePaused:
		return errors.New("cannot start an already running container")
	default:
		return fmt.Errorf("cannot start a container in the %s state", st.status)
	}
	cl, err := r.dial(ctx, c)
	if err != nil {
		return err
	}
	defer cl.Close()
	if c.Spec != nil && c.Spec.Process != nil && c.Spec.Process.Terminal {
		// The monitor relays SIGWINCH resizes asynchronously; a size set on the master just
		// before start could land after the process read it. Push the pty's current size
		// first, read from the monitor's pty slave (its descriptor 5).
		if rows, cols, err := monitorPtySize(c.Pid); err == nil && rows > 0 {
			if _, err := cl.ResizePty(ctx, &taskAPI.ResizePtyRequest{ID: id, Width: uint32(cols), Height: uint32(rows)}); err != nil {
				log.G(ctx).WithError(err).Warn("set terminal size before start")
			}
		}
	}
	if _, err := cl.Start(ctx, &taskAPI.StartRequest{ID: id}); err != nil {
		return fmt.Errorf("start container %s: %w", id, err)
	}
	if err := hooks.Run(ctx, hooks.Poststart, hooks.Of(c.Spec, hooks.Poststart), ociState(c, specs.StateRunning, c.Pid)); err != nil {
		log.G(ctx).WithError(err).Warn("poststart hook failed")
	}
	return nil
}
