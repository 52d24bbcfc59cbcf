package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli/v2"
)

func psCommand() *cli.Command {
	return &cli.Command{
		Name:      "ps",
		Usage:     "ps displays the processes running inside a container",
		ArgsUsage: "<container-id>",
		Description: `The ps command lists the container's processes. They run in the container's VM, so the
pids are guest pids and no host ps(1) can describe them: the table shows each pid and the
exec it belongs to (- for the init process and its descendants), --format json prints the
pids as a JSON array, as runc does. runc's [ps options] are refused for the same reason.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "format", Aliases: []string{"f"}, Value: "table", Usage: "select one of: table or json"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() < 1 {
				return errors.New("ps: container id is required")
			}
			if c.NArg() > 1 {
				return fmt.Errorf("ps options %q are not supported: the container's processes run in its VM", strings.Join(c.Args().Tail(), " "))
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
			if r.statusOf(ctx, ctr).status == specs.StateStopped {
				return writePs(c.App.Writer, format, nil)
			}
			cl, err := r.dial(ctx, ctr)
			if err != nil {
				return err
			}
			defer cl.Close()
			resp, err := cl.Pids(ctx, &taskAPI.PidsRequest{ID: ctr.ID})
			if err != nil {
				return fmt.Errorf("list processes of %s: %w", ctr.ID, err)
			}
			return writePs(c.App.Writer, format, resp.Processes)
		},
	}
}

// writePs prints processes as a table or, like runc, as a JSON array of pids.
func writePs(w io.Writer, format string, procs []*task.ProcessInfo) error {
	if format == "json" {
		pids := make([]uint32, 0, len(procs))
		for _, p := range procs {
			pids = append(pids, p.Pid)
		}
		return json.NewEncoder(w).Encode(pids)
	}
	tw := tabwriter.NewWriter(w, 4, 1, 3, ' ', 0)
	fmt.Fprintln(tw, "PID\tEXEC")
	for _, p := range procs {
		fmt.Fprintf(tw, "%d\t%s\n", p.Pid, execOf(p))
	}
	return tw.Flush()
}

func execOf(p *task.ProcessInfo) string {
	if p.Info == nil {
		return "-"
	}
	v, err := typeurl.UnmarshalAny(p.Info)
	if err != nil {
		return "-"
	}
	if d, ok := v.(*options.ProcessDetails); ok && d.ExecID != "" {
		return d.ExecID
	}
	return "-"
}
