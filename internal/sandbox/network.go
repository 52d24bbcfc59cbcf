package sandbox

import (
	"context"
	"errors"
	"fmt"

	"github.com/containerd/errdefs"
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
		vmcfg.NICs = append(vmcfg.NICs, hvNIC(n))
	}
	return att, nil
}

// hvNIC is the hypervisor's view of an attached NIC.
func hvNIC(n network.NIC) hypervisor.NIC {
	nic := hypervisor.NIC{ID: n.ID, MAC: n.MAC, Tap: n.Tap, Vhost: n.Vhost}
	for _, q := range n.MoreQueues {
		nic.MoreQueues = append(nic.MoreQueues, hypervisor.NICQueue{Tap: q.Tap, Vhost: q.Vhost})
	}
	return nic
}

// configureNetwork gives the guest the pod interfaces' addresses and MTUs (the agent finds
// each NIC by its MAC, and waits for a hot-plugged one at its PCI path), then the routes
// and the static neighbours.
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

// SyncNetwork makes the VM follow the pod network namespace after it booted: interfaces
// the manager added since the last look (nerdctl and docker-style managers run CNI from a
// createRuntime or prestart hook, once the namespace exists) are attached as at boot and
// hot-plugged (hypervisor.NICHotplugger), then configured in the guest; interfaces that
// left the namespace are unplugged and their taps removed. It runs when a container is
// created and started (after the create-time hooks ran) and when one is deleted; a
// sandbox without a pod network namespace has nothing to follow. On error the interfaces
// this call added are detached again.
func (s *Sandbox) SyncNetwork(ctx context.Context) (retErr error) {
	if s.cfg.Network.NetNS == "" {
		return nil
	}
	s.netMu.Lock()
	defer s.netMu.Unlock()
	att, err := network.Rescan(ctx, s.dir, s.cfg.Network)
	if err != nil {
		return fmt.Errorf("sandbox %s: %w", s.id, err)
	}
	defer att.CloseFiles() // the VMM holds its own copies of what it attached
	var errs []error
	for _, ep := range att.Gone {
		if err := s.detachEndpoint(ctx, ep); err != nil {
			errs = append(errs, err)
		}
	}
	if len(att.NICs) == 0 {
		return errors.Join(errs...)
	}
	var plugged []network.Endpoint
	defer func() {
		if retErr == nil {
			return
		}
		cctx, cancel := cleanupContext(ctx)
		defer cancel()
		for _, ep := range att.Added {
			if err := s.detachEndpoint(cctx, ep); err != nil {
				log.G(ctx).WithError(err).Warn("rollback: detach a pod interface")
			}
		}
	}()
	h, ok := s.vm.(hypervisor.NICHotplugger)
	if !ok {
		return fmt.Errorf("sandbox %s: interface %s appeared in the pod network namespace, but hypervisor %s cannot hot-plug NICs: %w",
			s.id, att.Added[0].Link, s.cfg.Hypervisor, errdefs.ErrNotImplemented)
	}
	for i, n := range att.NICs {
		path, err := h.AttachNIC(ctx, hvNIC(n))
		if err != nil {
			return fmt.Errorf("sandbox %s: hot-plug interface %s: %w", s.id, att.Added[i].Link, err)
		}
		plugged = append(plugged, att.Added[i])
		att.Interfaces[i].PciPath = path
	}
	if err := s.configureNetwork(ctx, att); err != nil {
		return s.explain(fmt.Errorf("sandbox %s: %w", s.id, err))
	}
	log.G(ctx).WithField("added", len(plugged)).WithField("removed", len(att.Gone)).Debug("pod network followed")
	return errors.Join(errs...)
}

// detachEndpoint unplugs ep's NIC from the VM (the guest lets go of it first), then removes
// its tap and filters from the pod network namespace. A NIC the VM does not have (never
// plugged, or the VM is gone) has nothing to unplug.
func (s *Sandbox) detachEndpoint(ctx context.Context, ep network.Endpoint) error {
	if h, ok := s.vm.(hypervisor.NICHotplugger); ok && ep.NIC != "" && s.vmAlive() {
		if err := h.DetachNIC(ctx, ep.NIC); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("sandbox %s: unplug interface %s: %w", s.id, ep.Link, err)
		}
	}
	if err := network.Detach(ctx, s.dir, ep); err != nil {
		return fmt.Errorf("sandbox %s: %w", s.id, err)
	}
	return nil
}

// NetNS is the path of the pod's network namespace on the host (the spec's, or the one the
// sandbox made for a spec asking for a new one); empty when the VM is not in a pod network.
func (s *Sandbox) NetNS() string { return s.cfg.Network.NetNS }
