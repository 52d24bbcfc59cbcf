//go:build linux

package agent

import (
	"context"

	"github.com/containerd/log"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
	"github.com/vessel-containers/vessel/internal/agent/policy"
)

// PolicyGate is the gate holding the service's policy; the server checks every request
// with it (NewServer).
func (s *Service) PolicyGate() *policy.Gate { return &s.gate }

// SetPolicy puts a policy in force. Whether this request is allowed was decided by the
// policy in force before it (the server's interceptor).
func (s *Service) SetPolicy(ctx context.Context, req *agentv1.SetPolicyRequest) (*agentv1.SetPolicyResponse, error) {
	p, err := policy.Parse(req.GetPolicy())
	if err != nil {
		return nil, err
	}
	s.gate.Set(p)
	log.G(ctx).WithField("digest", p.Digest()).Info("agent policy in force")
	return &agentv1.SetPolicyResponse{Digest: p.Digest()}, nil
}
