package sandbox

import (
	"context"
	"fmt"

	"github.com/containerd/log"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/network"
)

// attachNetwork attaches the pod network namespace (cfg.Network) and adds a NIC to vmcfg
// for each attached interface. The caller tears it down (network.Teardown) on a later
// failure and closes the attachment's descriptors once the VMM started.
func (s *Sandbox) attachNetwork(ctx context.Context, vmcfg *hypervisor.Config) (*network.Attachment, error) {
	att, err := network.Attach(ctx, s.dir, s.cfg.Network)
	if err != nil {
		return nil, fmt.Errorf("sandbox %s: %w", s.id, err)
	}
	for _, n := range att.NICs {
		vmcfg.NICs = append(vmcfg.NICs, hypervisor.NIC{ID: n.ID, MAC: n.MAC, Tap: n.Tap, Vhost: n.Vhost})
	}
	return att, nil
}

// configureNetwork gives the guest the pod interfaces' addresses and MTUs (the agent finds
// each NIC by its MAC), then the routes and the static neighbours.
// Preconditions: CreateSandbox succeeded.
func (s *Sandbox) configureNetwork(ctx context.Context, att *network.Attachment) error {
	if len(att.Interfaces) == 0 {
		return nil
	}
	for _, in := range att.Interfaces {
		if _, err := s.agent.UpdateInterface(ctx, in); err != nil {
			return fmt.Errorf("configure guest interface %s (%s, mtu %d): %w", in.GetName(), in.GetHwAddr(), in.GetMtu(), err)
		}
	}
	if len(att.Routes) > 0 {
		if _, err := s.agent.UpdateRoutes(ctx, &agentv1.Routes{Routes: att.Routes}); err != nil {
			return fmt.Errorf("configure guest routes: %w", err)
		}
	}
	if len(att.Neighbors) > 0 {
		if err := s.agent.AddARPNeighbors(ctx, att.Neighbors); err != nil {
			return fmt.Errorf("configure guest neighbours: %w", err)
		}
	}
	log.G(ctx).WithField("interfaces", len(att.Interfaces)).WithField("routes", len(att.Routes)).Debug("guest network configured")
	return nil
}
