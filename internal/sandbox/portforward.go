package sandbox

import (
	"context"

	"github.com/containerd/log"

	"github.com/vessel-containers/vessel/internal/portforward"
)

// startPortForward makes CRI port forwarding reach the guest (internal/portforward): a
// listener on the pod namespace's loopback, a redirect table there, and a relay through the
// agent. A sandbox without a pod network namespace has nothing to forward. A host where it
// cannot be set up (no nf_tables) runs the sandbox without it, and says so.
// Preconditions: CreateSandbox succeeded.
func (s *Sandbox) startPortForward(ctx context.Context) {
	if s.cfg.Network.NetNS == "" {
		return
	}
	f, err := portforward.Start(ctx, s.dir, s.cfg.Network.NetNS, s.agent)
	if err != nil {
		log.G(ctx).WithError(err).Warn("port forwarding (kubectl port-forward) is not available for this sandbox")
		return
	}
	s.portFwd = f
}

// stopPortForward ends the relays and removes the redirect table; without a forwarder it
// removes a table a crashed owner left (from the record in the sandbox directory).
func (s *Sandbox) stopPortForward() error {
	if s.portFwd != nil {
		return s.portFwd.Close()
	}
	return portforward.Teardown(s.dir)
}
