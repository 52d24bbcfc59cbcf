package qmp

import (
	"context"
	"errors"
	"io"
	"syscall"
)

// Status is the answer to query-status.
type Status struct {
	// Status is QEMU's RunState: "running", "paused", "shutdown", "prelaunch",
	// "internal-error", "guest-panicked", ...
	Status  string `json:"status"`
	Running bool   `json:"running"`
}

// QueryStatus runs query-status.
func (c *Client) QueryStatus(ctx context.Context) (Status, error) {
	var s Status
	err := c.Execute(ctx, "query-status", nil, &s)
	return s, err
}

// Stop runs stop: it pauses all vCPUs and returns once they are stopped.
func (c *Client) Stop(ctx context.Context) error {
	return c.Execute(ctx, "stop", nil, nil)
}

// Cont runs cont: it resumes the vCPUs.
func (c *Client) Cont(ctx context.Context) error {
	return c.Execute(ctx, "cont", nil, nil)
}

// Quit runs quit: QEMU exits without asking the guest. QEMU may close the connection
// before its response arrives; that counts as success.
func (c *Client) Quit(ctx context.Context) error {
	err := c.Execute(ctx, "quit", nil, nil)
	if err != nil && IsDisconnect(err) && !errors.Is(err, ErrClosed) {
		return nil
	}
	return err
}

// IsDisconnect reports whether err means the server went away.
func IsDisconnect(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, ErrClosed)
}
