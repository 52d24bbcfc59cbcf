//go:build linux

package agent

import (
	"context"
	"time"

	"github.com/containerd/log"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
)

// oomPollInterval is how often a pending GetOOMEvent looks at the containers' memory.events.
const oomPollInterval = 250 * time.Millisecond

// StatsContainer reads the container's cgroup statistics and the guest's network counters.
func (s *Service) StatsContainer(ctx context.Context, req *agentv1.StatsContainerRequest) (*agentv1.StatsContainerResponse, error) {
	c, err := s.lookup(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	resp, err := cgroupStats(c.cgroupDir)
	if err != nil {
		return nil, err
	}
	if ns := s.existingPodNetNS(); ns != nil {
		if nets, err := ns.Stats(); err == nil {
			resp.Networks = nets
		} else {
			log.G(ctx).WithError(err).Debug("network stats")
		}
	}
	return resp, nil
}

// GetOOMEvent long-polls for a container whose OOM kill count grew since the last event
// reported for it. The polling loop is the request's own: it stops when an event is found or
// the request's context ends (the host cancelled it or its session ended), so no goroutine
// outlives the call.
func (s *Service) GetOOMEvent(ctx context.Context, _ *agentv1.GetOOMEventRequest) (*agentv1.OOMEvent, error) {
	t := time.NewTicker(oomPollInterval)
	defer t.Stop()
	for {
		if id := s.nextOOM(); id != "" {
			log.G(ctx).WithField("container", id).Info("OOM kill reported")
			return &agentv1.OOMEvent{ContainerId: id}, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// nextOOM returns a container whose OOM kill count grew, and records the new count.
func (s *Service) nextOOM() string {
	s.mu.Lock()
	cs := make([]*container, 0, len(s.containers))
	for _, c := range s.containers {
		cs = append(cs, c)
	}
	s.mu.Unlock()
	counts := make([]uint64, len(cs))
	for i, c := range cs {
		counts[i] = c.oomKills()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, c := range cs {
		if s.containers[c.id] != c {
			continue // removed meanwhile
		}
		seen, ok := s.oomSeen[c.id]
		if !ok {
			seen = c.oomBase
		}
		if counts[i] > seen {
			s.oomSeen[c.id] = counts[i]
			return c.id
		}
	}
	return ""
}
