package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/containerd/errdefs"
	"github.com/urfave/cli/v2"
)

func listCommand() *cli.Command {
	return &cli.Command{
		Name:    "list",
		Aliases: []string{"ls"},
		Usage:   "lists containers started by vessel with the given root",
		Description: `The list command lists the containers under --root with their stand-in pid, status,
bundle, creation time and owner; --format json prints the state of each (as "vessel
state" does) in a JSON array; --quiet prints only the ids.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "format", Aliases: []string{"f"}, Value: "table", Usage: "select one of: table or json"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "display only container IDs"},
		},
		Action: func(c *cli.Context) error {
			format := c.String("format")
			if format != "table" && format != "json" {
				return fmt.Errorf("invalid format option %q: want table or json", format)
			}
			if c.NArg() > 0 {
				return fmt.Errorf("list takes no arguments (got %d)", c.NArg())
			}
			r, err := newRuntime(c)
			if err != nil {
				return err
			}
			ids, err := r.store.List()
			if err != nil {
				return err
			}
			states := make([]containerState, 0, len(ids))
			for _, id := range ids {
				ctr, err := r.store.Load(id)
				if errdefs.IsNotFound(err) {
					continue // being created or removed right now
				}
				if err != nil {
					return err
				}
				states = append(states, r.containerState(c.Context, ctr))
			}
			return writeList(c.App.Writer, states, format, c.Bool("quiet"))
		},
	}
}

// writeList prints containers as runc's list does.
func writeList(w io.Writer, states []containerState, format string, quiet bool) error {
	if quiet {
		for _, s := range states {
			fmt.Fprintln(w, s.ID)
		}
		return nil
	}
	if format == "json" {
		return json.NewEncoder(w).Encode(states)
	}
	tw := tabwriter.NewWriter(w, 12, 1, 3, ' ', 0)
	fmt.Fprint(tw, "ID\tPID\tSTATUS\tBUNDLE\tCREATED\tOWNER\n")
	for _, s := range states {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", s.ID, s.Pid, s.Status, s.Bundle, s.Created.Format(time.RFC3339Nano), s.Owner)
	}
	return tw.Flush()
}
