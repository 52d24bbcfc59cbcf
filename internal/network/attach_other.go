//go:build !linux

package network

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
)

// Attach attaches nothing when no netns or the none model is asked, and is not
// implemented otherwise: network namespaces are Linux's.
func Attach(_ context.Context, _ string, cfg Config) (*Attachment, error) {
	model, err := ParseModel(string(cfg.Model))
	if err != nil {
		return nil, err
	}
	if cfg.NetNS == "" || model == ModelNone {
		return &Attachment{}, nil
	}
	return nil, fmt.Errorf("attach pod network %s: %w", cfg.NetNS, errdefs.ErrNotImplemented)
}

// Teardown has nothing to remove where Attach creates nothing.
func Teardown(context.Context, string) error { return nil }

// Rescan has nothing to rescan where Attach attaches nothing.
func Rescan(context.Context, string, Config) (*Attachment, error) { return &Attachment{}, nil }

// Detach has nothing to remove where Attach creates nothing.
func Detach(context.Context, string, Endpoint) error { return nil }

// CreateNetNS is not implemented: network namespaces are Linux's.
func CreateNetNS(string) (string, error) {
	return "", fmt.Errorf("create network namespace: %w", errdefs.ErrNotImplemented)
}

// InNetNSPath is not implemented: network namespaces are Linux's.
func InNetNSPath(path string, _ func() error) error {
	return fmt.Errorf("enter network namespace %s: %w", path, errdefs.ErrNotImplemented)
}
