package cli

import (
	"errors"
	"fmt"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli/v2"

	"github.com/vessel-containers/vessel/internal/oci"
	"github.com/vessel-containers/vessel/internal/shimclient"
)

func pauseCommand() *cli.Command {
	return &cli.Command{
		Name:      "pause",
		Usage:     "pause suspends all processes inside the container",
		ArgsUsage: "<container-id>",
		Description: `The pause command freezes every process of a running container (the cgroup freezer in
its VM). The VM itself keeps running.`,
		Action: containerAction(func(c *cli.Context, r *ociRuntime, id string) error { return r.pauseResume(c, id, true) }),
	}
}

func resumeCommand() *cli.Command {
	return &cli.Command{
		Name:        "resume",
		Usage:       "resumes all processes that have been previously paused",
		ArgsUsage:   "<container-id>",
		Description: `The resume command thaws a paused container.`,
		Action:      containerAction(func(c *cli.Context, r *ociRuntime, id string) error { return r.pauseResume(c, id, false) }),
	}
}

func (r *ociRuntime) pauseResume(c *cli.Context, id string, pause bool) error {
	ctx := c.Context
	check := func(st specs.ContainerState) error {
		switch {
		case pause && st != specs.StateRunning:
			return errors.New("container not running")
		case !pause && st != oci.StatePaused:
			return errors.New("container not paused")
		}
		return nil
	}
	err := r.withShim(ctx, id, check, func(cl *shimclient.Client) error {
		var err error
		if pause {
			_, err = cl.Pause(ctx, &taskAPI.PauseRequest{ID: id})
		} else {
			_, err = cl.Resume(ctx, &taskAPI.ResumeRequest{ID: id})
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("%s container %s: %w", c.Command.Name, id, err)
	}
	return nil
}
