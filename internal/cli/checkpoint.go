package cli

import (
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/urfave/cli/v2"
)

// errCheckpoint is why checkpoint and restore are refused: a container's state is in its
// VM's memory, and CRIU on the host cannot reach it.
var errCheckpoint = fmt.Errorf("checkpoint and restore are not supported: the container runs in a VM, which CRIU cannot checkpoint, and Vessel has no sandbox checkpointing: %w", errdefs.ErrNotImplemented)

// checkpointCommand and restoreCommand stand for runc's verbs of the same names: whatever
// their flags, they fail with errCheckpoint.
func checkpointCommand() *cli.Command {
	return refusedCommand("checkpoint", "checkpoint a running container (not supported: refused)")
}

func restoreCommand() *cli.Command {
	return refusedCommand("restore", "restore a container from a previous checkpoint (not supported: refused)")
}

func refusedCommand(name, usage string) *cli.Command {
	return &cli.Command{
		Name:            name,
		Usage:           usage,
		ArgsUsage:       "<container-id>",
		Description:     errCheckpoint.Error(),
		SkipFlagParsing: true,
		Action: func(c *cli.Context) error {
			if a := c.Args().First(); a == "--help" || a == "-h" {
				return cli.ShowSubcommandHelp(c)
			}
			return fmt.Errorf("%s: %w", name, errCheckpoint)
		},
	}
}
