package cli

import (
	"errors"
	"fmt"
	"syscall"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli/v2"
)

func killCommand() *cli.Command {
	return &cli.Command{
		Name:      "kill",
		Usage:     "kill sends the specified signal (default: SIGTERM) to the container's init process",
		ArgsUsage: "<container-id> [signal]",
		Description: `The kill command sends a signal to the container's init process in its VM, or with --all
to every process of the container. The signal is a number (0-64) or a name, with or
without the SIG prefix (TERM, SIGKILL, RTMIN+3); signal 0 sends nothing and only checks
that the container runs. Killing a stopped container is an error ("container not
running"), except with --all, which then has no process to signal and succeeds, as runc's
does.`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "all", Aliases: []string{"a"}, Usage: "send the specified signal to all processes inside the container"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() < 1 || c.NArg() > 2 {
				return fmt.Errorf("kill: want <container-id> [signal] (got %d arguments)", c.NArg())
			}
			sig := syscall.SIGTERM
			if c.NArg() == 2 {
				s, err := parseSignal(c.Args().Get(1))
				if err != nil {
					return err
				}
				sig = s
			}
			r, err := newRuntime(c)
			if err != nil {
				return err
			}
			ctx := c.Context
			ctr, err := r.load(c.Args().First())
			if err != nil {
				return err
			}
			switch r.statusOf(ctx, ctr).status {
			case specs.StateStopped:
				if c.Bool("all") {
					return nil
				}
				return errors.New("container not running")
			case specs.StateCreating:
				return errors.New("container not created")
			}
			cl, err := r.dial(ctx, ctr)
			if err != nil {
				return err
			}
			defer cl.Close()
			_, err = cl.Kill(ctx, &taskAPI.KillRequest{ID: ctr.ID, Signal: uint32(sig), All: c.Bool("all")})
			if errdefs.IsNotFound(err) {
				return errors.New("container not running")
			}
			if err != nil {
				return fmt.Errorf("kill container %s: %w", ctr.ID, err)
			}
			return nil
		},
	}
}
