package qmp

import (
	"context"
	"os"
)

// Commands for block devices: descriptors handed to QEMU in fd sets, block nodes and the
// devices on them.

// AddFD passes f's descriptor to QEMU into a new fd set (QMP add-fd) and returns the set's
// id: QEMU opens "/dev/fdset/<id>" by duplicating a descriptor of the set whose access mode
// matches, so a block node can use a file QEMU itself may not open. opaque is kept with the
// descriptor (query-fdsets shows it). QEMU keeps its own copy: the caller may close f.
func (c *Client) AddFD(ctx context.Context, f *os.File, opaque string) (int, error) {
	var r struct {
		FDSetID int `json:"fdset-id"`
		FD      int `json:"fd"`
	}
	args := map[string]any{}
	if opaque != "" {
		args["opaque"] = opaque
	}
	if err := c.execute(ctx, "add-fd", args, &r, f); err != nil {
		return 0, err
	}
	return r.FDSetID, nil
}

// RemoveFD closes the descriptors of an fd set (QMP remove-fd); QEMU frees the set once
// nothing it opened from the set is open any more.
func (c *Client) RemoveFD(ctx context.Context, fdset int) error {
	return c.Execute(ctx, "remove-fd", map[string]any{"fdset-id": fdset}, nil)
}

// BlockdevAdd runs blockdev-add with the given options (driver, node-name, file, ...).
func (c *Client) BlockdevAdd(ctx context.Context, opts map[string]any) error {
	return c.Execute(ctx, "blockdev-add", opts, nil)
}

// BlockdevDel runs blockdev-del for a node no device uses any more.
func (c *Client) BlockdevDel(ctx context.Context, nodeName string) error {
	return c.Execute(ctx, "blockdev-del", map[string]any{"node-name": nodeName}, nil)
}

// BlockResize runs block_resize: node nodeName takes size bytes (a file node truncates its
// file to it) and the device on it tells the guest of its new capacity.
func (c *Client) BlockResize(ctx context.Context, nodeName string, size uint64) error {
	return c.Execute(ctx, "block_resize", map[string]any{"node-name": nodeName, "size": size}, nil)
}

// DeviceDel runs device_del. QEMU asks the guest to release the device and answers at
// once; the DEVICE_DELETED event with the device's id tells that it is gone.
func (c *Client) DeviceDel(ctx context.Context, id string) error {
	return c.Execute(ctx, "device_del", map[string]any{"id": id}, nil)
}

// BlockNode is one entry of query-named-block-nodes.
type BlockNode struct {
	NodeName string `json:"node-name"`
	Drv      string `json:"drv"`
	File     string `json:"file"`
	ReadOnly bool   `json:"ro"`
}

// QueryNamedBlockNodes lists the block nodes that have a name (flat: only the top nodes
// that blockdev-add created, not their children).
func (c *Client) QueryNamedBlockNodes(ctx context.Context) ([]BlockNode, error) {
	var nodes []BlockNode
	err := c.Execute(ctx, "query-named-block-nodes", map[string]any{"flat": true}, &nodes)
	return nodes, err
}
