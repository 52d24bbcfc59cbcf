package qmp

import "context"

// Commands for network devices: descriptors handed to the monitor by name, and netdevs.

// CloseFD closes a descriptor GetFD passed that no command took over (QMP closefd).
// netdev_add's fd and vhostfd take over the descriptors they name.
func (c *Client) CloseFD(ctx context.Context, name string) error {
	return c.Execute(ctx, "closefd", map[string]any{"fdname": name}, nil)
}

// NetdevAdd runs netdev_add with the given options (type, id, fd, ...).
func (c *Client) NetdevAdd(ctx context.Context, opts map[string]any) error {
	return c.Execute(ctx, "netdev_add", opts, nil)
}

// NetdevDel runs netdev_del for a netdev no device uses any more.
func (c *Client) NetdevDel(ctx context.Context, id string) error {
	return c.Execute(ctx, "netdev_del", map[string]any{"id": id}, nil)
}
