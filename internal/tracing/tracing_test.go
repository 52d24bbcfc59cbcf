package tracing_test

import (
	"context"
	"errors"
	"testing"

	"github.com/containerd/ttrpc"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
	"github.com/vessel-containers/vessel/internal/testutil"
	"github.com/vessel-containers/vessel/internal/tracing"
)

// worker serves CollectSpans by doing traced work: one child span "work".
type worker struct{}

func (worker) CollectSpans(ctx context.Context, _ *agentv1.CollectSpansRequest) (*agentv1.CollectSpansResponse, error) {
	_, span := tracing.Start(ctx, "work")
	span.End()
	return &agentv1.CollectSpansResponse{}, nil
}

// pair serves worker with rec's server spans on a unix socket and returns a client whose
// calls propagate the trace context when propagate is true.
func pair(t *testing.T, rec *tracing.Recorder, propagate bool) agentv1.TracingService {
	t.Helper()
	srv, err := ttrpc.NewServer(ttrpc.WithUnaryServerInterceptor(
		func(ctx context.Context, u ttrpc.Unmarshaler, info *ttrpc.UnaryServerInfo, m ttrpc.Method) (any, error) {
			ctx, span := rec.StartServer(ctx, "server "+info.FullMethod)
			resp, err := m(ctx, u)
			tracing.End(span, err)
			return resp, err
		}))
	if err != nil {
		t.Fatal(err)
	}
	agentv1.RegisterTracingService(srv, worker{})
	client := ttrpc.NewClient(testutil.ServeTTRPC(t, srv),
		ttrpc.WithUnaryClientInterceptor(tracing.ClientInterceptor("call ", func() bool { return propagate })))
	t.Cleanup(func() { client.Close() })
	return agentv1.NewTracingClient(client)
}

func collected(t *testing.T, rec *tracing.Recorder) []*tracepb.Span {
	t.Helper()
	b, dropped, err := rec.Collect()
	if err != nil {
		t.Fatal(err)
	}
	if dropped != 0 {
		t.Errorf("dropped %d spans, want 0", dropped)
	}
	rs, err := tracing.DecodeSpans(b)
	if err != nil {
		t.Fatal(err)
	}
	var out []*tracepb.Span
	for _, r := range rs {
		for _, ss := range r.GetScopeSpans() {
			out = append(out, ss.GetSpans()...)
		}
	}
	return out
}

func TestPropagationOverTTRPC(t *testing.T) {
	host := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(host))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })

	t.Run("traced call", func(t *testing.T) {
		host.Reset()
		rec, err := tracing.NewRecorder("guest", 0)
		if err != nil {
			t.Fatal(err)
		}
		client := pair(t, rec, true)
		ctx, root := tp.Tracer("test").Start(context.Background(), "root")
		if _, err := client.CollectSpans(ctx, &agentv1.CollectSpansRequest{}); err != nil {
			t.Fatal(err)
		}
		root.End()

		hostSpans := host.GetSpans()
		var call tracetest.SpanStub
		for _, s := range hostSpans {
			if s.Name == "call CollectSpans" {
				call = s
			}
		}
		if !call.SpanContext.IsValid() || call.Parent.SpanID() != root.SpanContext().SpanID() || call.SpanKind != trace.SpanKindClient {
			t.Fatalf("host spans %v: want a client span \"call CollectSpans\" under root", hostSpans)
		}
		guest := collected(t, rec)
		if len(guest) != 2 {
			t.Fatalf("guest recorded %d spans, want 2 (server and work)", len(guest))
		}
		byName := map[string]*tracepb.Span{}
		for _, s := range guest {
			byName[s.GetName()] = s
		}
		server, work := byName["server /vessel.agent.v1.Tracing/CollectSpans"], byName["work"]
		if server == nil || work == nil {
			t.Fatalf("guest spans %v: want the server span and work", byName)
		}
		callID := call.SpanContext.SpanID()
		if got := trace.SpanID(server.GetParentSpanId()); got != callID {
			t.Errorf("server span's parent = %s, want the client span %s", got, callID)
		}
		if got := trace.SpanID(work.GetParentSpanId()); got != trace.SpanID(server.GetSpanId()) {
			t.Errorf("work's parent = %s, want the server span", got)
		}
		if got := trace.TraceID(work.GetTraceId()); got != root.SpanContext().TraceID() {
			t.Errorf("work's trace = %s, want the root's %s", got, root.SpanContext().TraceID())
		}
		if again := collected(t, rec); len(again) != 0 {
			t.Errorf("a second Collect returned %d spans, want none (collected spans are forgotten)", len(again))
		}
	})

	t.Run("untraced call records nothing", func(t *testing.T) {
		host.Reset()
		rec, err := tracing.NewRecorder("guest", 0)
		if err != nil {
			t.Fatal(err)
		}
		client := pair(t, rec, true)
		if _, err := client.CollectSpans(context.Background(), &agentv1.CollectSpansRequest{}); err != nil {
			t.Fatal(err)
		}
		if got := collected(t, rec); len(got) != 0 {
			t.Errorf("guest recorded %d spans for an untraced call, want 0", len(got))
		}
		if got := host.GetSpans(); len(got) != 0 {
			t.Errorf("host recorded %d spans for an untraced call, want 0", len(got))
		}
	})

	t.Run("propagation off", func(t *testing.T) {
		host.Reset()
		rec, err := tracing.NewRecorder("guest", 0)
		if err != nil {
			t.Fatal(err)
		}
		client := pair(t, rec, false)
		ctx, root := tp.Tracer("test").Start(context.Background(), "root")
		if _, err := client.CollectSpans(ctx, &agentv1.CollectSpansRequest{}); err != nil {
			t.Fatal(err)
		}
		root.End()
		if got := collected(t, rec); len(got) != 0 {
			t.Errorf("guest recorded %d spans without propagation, want 0", len(got))
		}
		if got := len(host.GetSpans()); got != 2 {
			t.Errorf("host recorded %d spans, want 2 (root and the client span)", got)
		}
	})
}

func TestRecorderLimit(t *testing.T) {
	rec, err := tracing.NewRecorder("guest", 3)
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider()
	ctx, root := tp.Tracer("test").Start(context.Background(), "root")
	defer root.End()
	// A remote parent as the agent sees it: the host's span context from metadata.
	remote := trace.ContextWithRemoteSpanContext(context.Background(), trace.SpanContextFromContext(ctx))
	for range 5 {
		_, s := rec.StartServer(remote, "x")
		s.End()
	}
	b, dropped, err := rec.Collect()
	if err != nil {
		t.Fatal(err)
	}
	rs, err := tracing.DecodeSpans(b)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range rs {
		for _, ss := range r.GetScopeSpans() {
			n += len(ss.GetSpans())
		}
	}
	if n != 3 || dropped != 2 {
		t.Errorf("kept %d, dropped %d; want 3 kept and 2 dropped", n, dropped)
	}
}

func TestDecodeSpansRejectsGarbage(t *testing.T) {
	if _, err := tracing.DecodeSpans([]byte{0x0a, 0xff}); err == nil {
		t.Error("DecodeSpans of a truncated message: no error")
	}
	got, err := tracing.DecodeSpans(nil)
	if err != nil || got != nil {
		t.Errorf("DecodeSpans(nil) = %v, %v; want nil, nil", got, err)
	}
}

func TestEndMarksFailure(t *testing.T) {
	host := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(host))
	ctx, root := tp.Tracer("test").Start(context.Background(), "root")
	_, s := tracing.Start(ctx, "child")
	tracing.End(s, errors.New("boom"))
	root.End()
	for _, got := range host.GetSpans() {
		if got.Name == "child" {
			if got.Status.Description != "boom" || got.Parent.SpanID() != root.SpanContext().SpanID() {
				t.Errorf("child: status %+v parent %s; want \"boom\" under root", got.Status, got.Parent.SpanID())
			}
			return
		}
	}
	t.Fatal("no child span recorded")
}

func TestStartWithoutSpanDoesNotRecord(t *testing.T) {
	ctx, s := tracing.Start(context.Background(), "x")
	defer s.End()
	if s.IsRecording() || tracing.Recording(ctx) {
		t.Error("a span started under no span records")
	}
}
