package shim

import (
	"context"
	"path"
	"time"

	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/vessel-containers/vessel/internal/config"
	"github.com/vessel-containers/vessel/internal/sandbox"
	"github.com/vessel-containers/vessel/internal/tracing"
	"github.com/vessel-containers/vessel/internal/tracing/otlp"
)

// tracingFromConfig starts exporting spans to runtime.otlp_endpoint when the configuration
// names one. The first sandbox's configuration decides for the rest of the shim's life
// (a shim serves one sandbox); without an endpoint the shim's tracer is a no-op. A
// receiver that cannot be set up is logged, never a reason to fail the sandbox.
func (s *service) tracingFromConfig(ctx context.Context, cfg *config.Config) {
	endpoint := cfg.Runtime.OTLPEndpoint
	if endpoint == "" {
		if cfg.Agent.EnableTracing {
			log.G(ctx).Warn("agent.enable_tracing without runtime.otlp_endpoint: nothing is traced")
		}
		return
	}
	s.traceMu.Lock()
	defer s.traceMu.Unlock()
	if s.exporter != nil {
		return
	}
	exp, err := otlp.New(ctx, endpoint, "vessel-shim")
	if err != nil {
		log.G(ctx).WithError(err).Warn("runtime.otlp_endpoint: no tracing")
		return
	}
	s.exporter = exp
}

// tracerProvider is the exporter's provider, or a no-op one while tracing is off.
func (s *service) tracerProvider() trace.TracerProvider {
	s.traceMu.Lock()
	defer s.traceMu.Unlock()
	if s.exporter == nil {
		return noop.NewTracerProvider()
	}
	return s.exporter.TracerProvider()
}

// startCreateSpan starts the root span of a task's Create ("shim Create", a child of the
// caller's span when containerd sent its trace context), backdated to begin: the
// configuration that turns tracing on is read during Create. The span of that reading
// ("shim plan", begin to now) is added under it.
func (s *service) startCreateSpan(ctx context.Context, id string, begin time.Time) (context.Context, trace.Span) {
	ctx, span := s.tracerProvider().Tracer(tracing.Scope).Start(tracing.Extract(ctx), "shim Create",
		trace.WithTimestamp(begin), trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attribute.String("container.id", id)))
	if span.IsRecording() {
		_, plan := tracing.Start(ctx, "shim plan", trace.WithTimestamp(begin))
		plan.End()
	}
	return ctx, span
}

// tracedCalls are the task API calls that get a span of their own, "shim <method>", with
// the container and exec ids as attributes. Create starts its own (startCreateSpan): the
// configuration that turns tracing on is read during it.
var tracedCalls = map[string]bool{"Start": true, "Exec": true, "Kill": true, "Wait": true, "Delete": true}

// spanCall runs a task API call under a server span (a child of the caller's span when
// the request carries one) when tracing is on and the call is one of tracedCalls; the
// spans the agent recorded for it are exported when it returns. Otherwise it only calls
// method.
func (s *service) spanCall(ctx context.Context, unmarshal ttrpc.Unmarshaler, info *ttrpc.UnaryServerInfo, method ttrpc.Method) (any, error) {
	name := path.Base(info.FullMethod)
	if !tracedCalls[name] {
		return method(ctx, unmarshal)
	}
	s.traceMu.Lock()
	on := s.exporter != nil
	s.traceMu.Unlock()
	if !on {
		return method(ctx, unmarshal)
	}
	ctx, span := s.tracerProvider().Tracer(tracing.Scope).Start(tracing.Extract(ctx), "shim "+name, trace.WithSpanKind(trace.SpanKindServer))
	resp, err := method(ctx, func(v any) error {
		err := unmarshal(v)
		if r, ok := v.(requestIDs); ok {
			span.SetAttributes(attribute.String("container.id", r.GetID()))
		}
		if r, ok := v.(requestExecID); ok && r.GetExecID() != "" {
			span.SetAttributes(attribute.String("exec.id", r.GetExecID()))
		}
		return err
	})
	s.mu.Lock()
	sb := s.sb
	s.mu.Unlock()
	if sb != nil {
		s.exportAgentSpans(ctx, sb)
	}
	tracing.End(span, err)
	return resp, err
}

// exportAgentSpans collects the spans the agent recorded under ctx's trace and exports
// them with the shim's (agent.enable_tracing).
func (s *service) exportAgentSpans(ctx context.Context, sb *sandbox.Sandbox) {
	if !tracing.Recording(ctx) || !sb.Agent().TracesAgent() {
		return
	}
	s.traceMu.Lock()
	exp := s.exporter
	s.traceMu.Unlock()
	spans, dropped, err := sb.Agent().CollectSpans(ctx)
	if err != nil {
		log.G(ctx).WithError(err).Warn("collect the agent's spans")
		return
	}
	if dropped > 0 {
		log.G(ctx).WithField("dropped", dropped).Warn("the agent dropped spans: its buffer was full")
	}
	exp.Upload(spans, func(err error) { log.G(s.ctx).WithError(err).Warn("export the agent's spans") })
}

// shutdownTracing exports the spans still pending and stops the exporter.
func (s *service) shutdownTracing(ctx context.Context) {
	s.traceMu.Lock()
	exp := s.exporter
	s.exporter = nil
	s.traceMu.Unlock()
	if exp == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := exp.Shutdown(ctx); err != nil {
		log.G(ctx).WithError(err).Warn("stop the span exporter")
	}
}
