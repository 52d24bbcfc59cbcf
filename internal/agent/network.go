//go:build linux

package agent

import (
	"context"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
	"github.com/vessel-containers/vessel/internal/agent/netcfg"
)

// UpdateInterface configures a guest interface (addresses, MTU, name) and brings it up.
func (s *Service) UpdateInterface(ctx context.Context, req *agentv1.UpdateInterfaceRequest) (*agentv1.Interface, error) {
	return netcfg.UpdateInterface(ctx, req.GetInterface())
}

// UpdateRoutes replaces the guest's routes.
func (s *Service) UpdateRoutes(ctx context.Context, req *agentv1.UpdateRoutesRequest) (*agentv1.Routes, error) {
	routes, err := netcfg.UpdateRoutes(ctx, req.GetRoutes().GetRoutes())
	if err != nil {
		return nil, err
	}
	return &agentv1.Routes{Routes: routes}, nil
}

// ListInterfaces lists the guest's interfaces.
func (s *Service) ListInterfaces(ctx context.Context, _ *agentv1.ListInterfacesRequest) (*agentv1.Interfaces, error) {
	ifs, err := netcfg.ListInterfaces()
	if err != nil {
		return nil, err
	}
	return &agentv1.Interfaces{Interfaces: ifs}, nil
}

// ListRoutes lists the guest's main routing table.
func (s *Service) ListRoutes(ctx context.Context, _ *agentv1.ListRoutesRequest) (*agentv1.Routes, error) {
	routes, err := netcfg.ListRoutes()
	if err != nil {
		return nil, err
	}
	return &agentv1.Routes{Routes: routes}, nil
}

// AddARPNeighbors adds static neighbour entries.
func (s *Service) AddARPNeighbors(ctx context.Context, req *agentv1.AddARPNeighborsRequest) (*agentv1.Empty, error) {
	if err := netcfg.AddARPNeighbors(ctx, req.GetNeighbors()); err != nil {
		return nil, err
	}
	return &agentv1.Empty{}, nil
}
