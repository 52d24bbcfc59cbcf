//go:build linux

package agent

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
	"github.com/vessel-containers/vessel/internal/agent/device"
	"github.com/vessel-containers/vessel/internal/agent/netcfg"
)

// podNetNS returns the pod's network namespace, making it on first use.
func (s *Service) podNetNS() (*netcfg.PodNS, error) {
	s.netMu.Lock()
	defer s.netMu.Unlock()
	if s.podNS != nil {
		return s.podNS, nil
	}
	if s.cfg.PodNetNS == "" {
		return nil, fmt.Errorf("%w: this agent has no pod network namespace path", errdefs.ErrFailedPrecondition)
	}
	ns, err := netcfg.NewPodNS(s.cfg.PodNetNS)
	if err != nil {
		return nil, err
	}
	s.podNS = ns
	return ns, nil
}

// existingPodNetNS is the pod's network namespace, or nil before it was made.
func (s *Service) existingPodNetNS() *netcfg.PodNS {
	s.netMu.Lock()
	defer s.netMu.Unlock()
	return s.podNS
}

// UpdateInterface configures a guest interface (addresses, MTU, name) in the pod's network
// namespace, moving it there first, and brings it up. An interface with a PCI path is a
// NIC the host has just hot-plugged: unless it is there already, the kernel's announcement
// of its interface is waited for (as long as the request lasts).
func (s *Service) UpdateInterface(ctx context.Context, req *agentv1.UpdateInterfaceRequest) (*agentv1.Interface, error) {
	in := req.GetInterface()
	if in == nil {
		return nil, fmt.Errorf("%w: interface is missing", errdefs.ErrInvalidArgument)
	}
	ns, err := s.podNetNS()
	if err != nil {
		return nil, err
	}
	if pci := in.GetPciPath(); pci != "" {
		have, err := ns.Has(in)
		if err != nil {
			return nil, err
		}
		if !have {
			if _, err := device.WaitNet(ctx, s.cfg.SysDir, pci); err != nil {
				return nil, err
			}
		}
	}
	return ns.UpdateInterface(ctx, in)
}

// UpdateRoutes replaces the pod network namespace's routes.
func (s *Service) UpdateRoutes(ctx context.Context, req *agentv1.UpdateRoutesRequest) (*agentv1.Routes, error) {
	ns, err := s.podNetNS()
	if err != nil {
		return nil, err
	}
	routes, err := ns.UpdateRoutes(ctx, req.GetRoutes().GetRoutes())
	if err != nil {
		return nil, err
	}
	return &agentv1.Routes{Routes: routes}, nil
}

// ListInterfaces lists the pod network namespace's interfaces (none before it exists).
func (s *Service) ListInterfaces(ctx context.Context, _ *agentv1.ListInterfacesRequest) (*agentv1.Interfaces, error) {
	ns := s.existingPodNetNS()
	if ns == nil {
		return &agentv1.Interfaces{}, nil
	}
	ifs, err := ns.ListInterfaces()
	if err != nil {
		return nil, err
	}
	return &agentv1.Interfaces{Interfaces: ifs}, nil
}

// ListRoutes lists the pod network namespace's main routing table (none before it exists).
func (s *Service) ListRoutes(ctx context.Context, _ *agentv1.ListRoutesRequest) (*agentv1.Routes, error) {
	ns := s.existingPodNetNS()
	if ns == nil {
		return &agentv1.Routes{}, nil
	}
	routes, err := ns.ListRoutes()
	if err != nil {
		return nil, err
	}
	return &agentv1.Routes{Routes: routes}, nil
}

// AddARPNeighbors adds static neighbour entries in the pod network namespace.
func (s *Service) AddARPNeighbors(ctx context.Context, req *agentv1.AddARPNeighborsRequest) (*agentv1.Empty, error) {
	ns, err := s.podNetNS()
	if err != nil {
		return nil, err
	}
	if err := ns.AddARPNeighbors(ctx, req.GetNeighbors()); err != nil {
		return nil, err
	}
	return &agentv1.Empty{}, nil
}
