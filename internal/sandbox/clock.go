package sandbox

import (
	"context"
	"time"

	"github.com/containerd/log"

	"github.com/vessel-containers/vessel/internal/agentclient"
)

// clockSlack is the request round trip above which the clock is set a second time.
const clockSlack = 4 * time.Millisecond

// syncGuestClock sets the guest clock from the host's. The guest applies a timestamp one
// request latency after the host took it, so it ends up behind by that much: tens of
// milliseconds under TCG on a busy host. When the first request's round trip shows that,
// the second one carries the host time plus half the round trip (as NTP estimates the
// one-way delay).
func syncGuestClock(ctx context.Context, agent *agentclient.Client) error {
	begin := time.Now()
	if err := agent.SetGuestDateTime(ctx, begin); err != nil {
		return err
	}
	rtt := time.Since(begin)
	if rtt <= clockSlack {
		return nil
	}
	if err := agent.SetGuestDateTime(ctx, time.Now().Add(rtt/2)); err != nil {
		return err
	}
	log.G(ctx).WithField("rtt", rtt).Debug("guest clock set twice to allow for the request latency")
	return nil
}
