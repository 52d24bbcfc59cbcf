package sandbox

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/log"
	"go.opentelemetry.io/otel/trace"

	"github.com/vessel-containers/vessel/internal/agentclient"
	"github.com/vessel-containers/vessel/internal/tracing"
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

// traceGuestBoot adds, when the span in ctx records, the guest's own timeline of its boot
// as two spans under it: "guest kernel boot" (kernel start to the agent's main) and "agent
// init" (the agent's main to serving). The guest's clock counts from its kernel's start, so
// the spans are placed to end when the agent's first answer arrived (answered): the
// answer's transit is counted to the time before the kernel (firmware loading the kernel),
// as the benchmark's breakdown does; nothing starts before begin. It costs one request.
func traceGuestBoot(ctx context.Context, agent *agentclient.Client, begin, answered time.Time) {
	if !tracing.Recording(ctx) {
		return
	}
	m, err := agent.GetMetrics(ctx)
	if err != nil {
		log.G(ctx).WithError(err).Debug("guest boot times unavailable")
		return
	}
	kernel, ok1 := metricSeconds(m.GetMetrics(), "vessel_agent_start_boot_seconds")
	ready, ok2 := metricSeconds(m.GetMetrics(), "vessel_agent_ready_boot_seconds")
	if !ok1 || !ok2 || kernel > ready {
		return
	}
	kernelStart := answered.Add(-ready)
	if kernelStart.Before(begin) {
		kernelStart = begin
	}
	agentStart := kernelStart.Add(kernel)
	if agentStart.After(answered) {
		agentStart = answered
	}
	_, k := tracing.Start(ctx, "guest kernel boot", trace.WithTimestamp(kernelStart))
	k.End(trace.WithTimestamp(agentStart))
	_, a := tracing.Start(ctx, "agent init", trace.WithTimestamp(agentStart))
	a.End(trace.WithTimestamp(answered))
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
