package agentclient

import (
	"context"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
)

// PortForwardOpen connects to 127.0.0.1:port (or [::1]:port) in the guest's pod network
// namespace; id names the connection in the other PortForward calls.
func (c *Client) PortForwardOpen(ctx context.Context, id string, port uint16, ipv6 bool) error {
	svc := agentv1.NewPortForwardClient(c.ttrpc)
	_, err := call(ctx, "PortForwardOpen", c.timeouts.Request, svc.PortForwardOpen,
		&agentv1.PortForwardOpenRequest{Id: id, Port: uint32(port), Ipv6: ipv6})
	return err
}

// PortForwardWrite writes data to the connection.
func (c *Client) PortForwardWrite(ctx context.Context, id string, data []byte) error {
	svc := agentv1.NewPortForwardClient(c.ttrpc)
	_, err := call(ctx, "PortForwardWrite", c.timeouts.Request, svc.PortForwardWrite,
		&agentv1.PortForwardWriteRequest{Id: id, Data: data})
	return err
}

// PortForwardRead long-polls for at most n bytes the connection sent (no timeout: bound it
// with ctx); eof once the guest side closed and everything was read.
func (c *Client) PortForwardRead(ctx context.Context, id string, n uint32) (data []byte, eof bool, err error) {
	svc := agentv1.NewPortForwardClient(c.ttrpc)
	resp, err := call(ctx, "PortForwardRead", 0, svc.PortForwardRead, &agentv1.PortForwardReadRequest{Id: id, Len: n})
	if err != nil {
		return nil, false, err
	}
	return resp.GetData(), resp.GetEof(), nil
}

// PortForwardCloseWrite shuts the connection's sending side down in the guest.
func (c *Client) PortForwardCloseWrite(ctx context.Context, id string) error {
	svc := agentv1.NewPortForwardClient(c.ttrpc)
	_, err := call(ctx, "PortForwardCloseWrite", c.timeouts.Request, svc.PortForwardCloseWrite, &agentv1.PortForwardRequest{Id: id})
	return err
}

// PortForwardClose closes the connection in the guest.
func (c *Client) PortForwardClose(ctx context.Context, id string) error {
	svc := agentv1.NewPortForwardClient(c.ttrpc)
	_, err := call(ctx, "PortForwardClose", c.timeouts.Request, svc.PortForwardClose, &agentv1.PortForwardRequest{Id: id})
	return err
}
