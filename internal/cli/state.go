package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/vessel-containers/vessel/internal/store"
)

// containerState is what state prints and list --format json lists: the OCI state (with
// pid always present, as runc prints it) plus runc's rootfs, created and owner.
type containerState struct {
	OCIVersion  string            `json:"ociVersion"`
	ID          string            `json:"id"`
	Pid         int               `json:"pid"`
	Status      string            `json:"status"`
	Bundle      string            `json:"bundle"`
	Rootfs      string            `json:"rootfs"`
	Created     time.Time         `json:"created"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Owner       string            `json:"owner"`
}

func (r *ociRuntime) containerState(ctx context.Context, c *store.Container) containerState {
	l := r.statusOf(ctx, c)
	s := ociState(c, l.status, l.pid)
	return containerState{
		OCIVersion: s.Version, ID: c.ID, Pid: s.Pid, Status: string(s.Status), Bundle: c.Bundle,
		Rootfs: c.Rootfs, Created: c.Created, Annotations: s.Annotations, Owner: r.store.Owner(c.ID),
	}
}

func stateCommand() *cli.Command {
	return &cli.Command{
		Name:      "state",
		Usage:     "output the state of a container",
		ArgsUsage: "<container-id>",
		Description: `The state command prints the container's state as JSON: ociVersion, id, pid, status
(creating, created, running, paused or stopped), bundle, rootfs, created, annotations
and owner. The pid is the host process standing for the container (0 once stopped). A
container is stopped once its process exited, its stand-in process died, or its shim or
VM is gone. A container that does not exist is an error ("container ... does not exist").`,
		Action: containerAction(func(c *cli.Context, r *ociRuntime, id string) error {
			ctr, err := r.load(id)
			if err != nil {
				return err
			}
			return writeJSON(c.App.Writer, r.containerState(c.Context, ctr))
		}),
	}
}

// writeJSON prints v indented, as runc prints state.
func writeJSON(w io.Writer, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	_, err = fmt.Fprintf(w, "%s\n", data)
	return err
}
