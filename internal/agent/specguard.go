//go:build linux

package agent

import (
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"
)

// checkGuestSpec refuses what the host strips from every spec before it sends it
// (guestSpec in internal/sandbox): hooks, which would run commands in the agent's context as
// guest root, and namespace paths, which name host namespaces (a pod's pause process, a CNI
// netns) and in the guest would join whatever process holds that path. A spec that still has
// them is hostile or a bug. Joining the sandbox's pid namespace is asked with
// CreateContainerRequest.sandbox_pidns instead.
func checkGuestSpec(spec *specs.Spec) error {
	if spec.Hooks != nil {
		return fmt.Errorf("%w: oci_spec.hooks is set: the agent runs no hooks (the host runs them)", errdefs.ErrInvalidArgument)
	}
	if spec.Linux == nil {
		return nil
	}
	for i, ns := range spec.Linux.Namespaces {
		if ns.Path != "" {
			return fmt.Errorf("%w: oci_spec.linux.namespaces[%d] (%s) has path %q: the agent joins no namespace by path (use sandbox_pidns for the sandbox's pid namespace)", errdefs.ErrInvalidArgument, i, ns.Type, ns.Path)
		}
	}
	return nil
}
