// Package tracing is Vessel's OpenTelemetry plumbing shared by host and guest: spans that
// follow the span in the context (so code with tracing off pays next to nothing), the W3C
// trace context carried in ttrpc request metadata, and the guest's Recorder, which keeps the
// agent's finished spans until the host collects them as OTLP. The host's exporter lives in
// tracing/otlp.
package tracing

import (
	"context"

	"github.com/containerd/ttrpc"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Scope is the instrumentation scope of every Vessel span.
const Scope = "github.com/vessel-containers/vessel"

// Start starts span name as a child of the span in ctx, with that span's tracer provider.
// With no recording span in ctx (tracing off, or an unsampled request) the span does not
// record and costs a few allocations at most.
func Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	return trace.SpanFromContext(ctx).TracerProvider().Tracer(Scope).Start(ctx, name, opts...)
}

// End ends span, marking it failed with err when err is not nil.
func End(span trace.Span, err error) {
	if err != nil && span.IsRecording() {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// Recording reports whether ctx carries a span that records.
func Recording(ctx context.Context) bool { return trace.SpanFromContext(ctx).IsRecording() }

// propagator is the W3C trace context format ("traceparent", "tracestate").
var propagator = propagation.TraceContext{}

// mdCarrier adapts ttrpc metadata to the propagator.
type mdCarrier ttrpc.MD

func (c mdCarrier) Get(key string) string {
	if v, ok := ttrpc.MD(c).Get(key); ok && len(v) > 0 {
		return v[0]
	}
	return ""
}

func (c mdCarrier) Set(key, value string) { ttrpc.MD(c).Set(key, value) }

func (c mdCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// Inject adds the span context of ctx to a ttrpc request's metadata; a context without a
// sampled span adds nothing.
func Inject(ctx context.Context, req *ttrpc.Request) {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() || !sc.IsSampled() {
		return
	}
	md := ttrpc.MD{}
	propagator.Inject(ctx, mdCarrier(md))
	for k, vs := range md {
		for _, v := range vs {
			req.Metadata = append(req.Metadata, &ttrpc.KeyValue{Key: k, Value: v})
		}
	}
}

// Extract returns ctx with the remote span context found in the ttrpc metadata of an
// incoming request, if any.
func Extract(ctx context.Context) context.Context {
	md, ok := ttrpc.GetMetadata(ctx)
	if !ok {
		return ctx
	}
	return propagator.Extract(ctx, mdCarrier(md))
}

// ClientInterceptor gives every call made under a recording span a client span named
// prefix + method and, when propagate reports true, sends its context in the request's
// metadata so the server can record children of it. Calls under no recording span pass
// through untouched.
func ClientInterceptor(prefix string, propagate func() bool) ttrpc.UnaryClientInterceptor {
	return func(ctx context.Context, req *ttrpc.Request, resp *ttrpc.Response, _ *ttrpc.UnaryClientInfo, invoke ttrpc.Invoker) error {
		if !Recording(ctx) {
			return invoke(ctx, req, resp)
		}
		ctx, span := Start(ctx, prefix+req.Method, trace.WithSpanKind(trace.SpanKindClient))
		if propagate() {
			Inject(ctx, req)
		}
		err := invoke(ctx, req, resp)
		if err == nil && resp.Status != nil && resp.Status.Code != 0 {
			span.SetStatus(codes.Error, resp.Status.Message)
		}
		End(span, err)
		return err
	}
}
