package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli/v2"

	"github.com/vessel-containers/vessel/internal/shimproto"
)

func psCommand() *cli.Command {
	return &cli.Command{
		Name:      "ps",
		Usage:     "ps displays the processes running inside a container",
		ArgsUsage: "<container-id>",
		Description: `The ps command lists the container's processes. They run in the container's VM, so the
pids are guest pids and no host ps(1) can describe them; vessel formats what the guest's
/proc says as ps does. Without [ps options] it prints ps -ef's columns (UID PID PPID C
STIME TTY TIME CMD), as runc does; the options it knows are -e and -A (every process of
the container, as always), -f (full format) and x (BSD format: PID TTY STAT TIME COMMAND),
alone or combined ("-ef", "-e -x"); others are refused. User names come from the host's
user database, as with runc. --format json prints the same guest pids as a JSON array, as
runc prints its pids.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "format", Aliases: []string{"f"}, Value: "table", Usage: "select one of: table or json"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() < 1 {
				return errors.New("ps: container id is required")
			}
			format := c.String("format")
			if format != "table" && format != "json" {
				return fmt.Errorf("invalid format option %q: want table or json", format)
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
			opts := c.Args().Tail()
			if format == "json" && len(opts) > 0 {
				return fmt.Errorf("ps options %q cannot be used with --format json", strings.Join(opts, " "))
			}
			cols, err := parsePsOptions(opts)
			if err != nil {
				return err
			}
			if r.statusOf(ctx, ctr).status == specs.StateStopped {
				if format == "json" {
					return writePs(c.App.Writer, nil)
				}
				return writePsTable(c.App.Writer, cols, nil, time.Now())
			}
			procs, err := r.guestProcesses(ctx, ctr)
			if err != nil {
				return err
			}
			if format == "json" {
				return writePs(c.App.Writer, procs)
			}
			return writePsTable(c.App.Writer, cols, procs, time.Now())
		},
	}
}

// writePs prints, like runc, a JSON array of pids: the guest pids the table shows.
func writePs(w io.Writer, procs []shimproto.Process) error {
	pids := make([]uint32, 0, len(procs))
	for _, p := range procs {
		pids = append(pids, p.Pid)
	}
	return json.NewEncoder(w).Encode(pids)
}
