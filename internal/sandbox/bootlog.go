package sandbox

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/log"
)

// logGuestBoot logs, at debug level only, the guest's own timeline of its boot: when the
// agent's main began ("kernel", the kernel's share of the boot) and when it began serving
// ("agent_ready"), both by the guest's clock since its kernel started. With the host's
// "vm started" and "agent ready" lines this splits a start into kernel boot, agent init and
// handshake (the benchmark harness reads them). It asks the agent, so it runs only while
// the VM is up and costs one request.
func (s *Sandbox) logGuestBoot(ctx context.Context) {
	logger := log.G(ctx)
	if !logger.Logger.IsLevelEnabled(log.DebugLevel) || !s.vmAlive() {
		return
	}
	m, err := s.agent.GetMetrics(ctx)
	if err != nil {
		logger.WithError(err).Debug("guest boot times unavailable")
		return
	}
	kernel, ok1 := metricSeconds(m.GetMetrics(), "vessel_agent_start_boot_seconds")
	ready, ok2 := metricSeconds(m.GetMetrics(), "vessel_agent_ready_boot_seconds")
	if !ok1 || !ok2 {
		return // an older agent
	}
	logger.WithField("kernel", kernel).WithField("agent_ready", ready).Debug("guest boot")
}

// metricSeconds finds an unlabelled sample "name value" in Prometheus text.
func metricSeconds(text, name string) (time.Duration, bool) {
	for _, line := range strings.Split(text, "\n") {
		v, ok := strings.CutPrefix(line, name+" ")
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			return 0, false
		}
		return time.Duration(f * float64(time.Second)), true
	}
	return 0, false
}
