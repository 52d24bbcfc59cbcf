//go:build linux

package agent

import (
	"context"
	"slices"
	"testing"
	"time"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
	"github.com/vessel-containers/vessel/internal/agentclient"
	"github.com/vessel-containers/vessel/internal/testutil"
	"github.com/vessel-containers/vessel/internal/tracing/otlp"
	"github.com/vessel-containers/vessel/internal/tracing/otlptest"
)

// TestAgentSpansReachTheHostExporter: a host span's context travels with an agent request;
// the agent records its server span under the host's client span, the host collects it
// with CollectSpans and exports it with its own, and an OTLP receiver sees one tree.
func TestAgentSpansReachTheHostExporter(t *testing.T) {
	svc := testService(t)
	if svc.spans == nil {
		t.Fatal("the service has no span recorder")
	}
	srv, err := newServer(svc, svc.PolicyGate(), svc.spans)
	if err != nil {
		t.Fatal(err)
	}
	client := agentclient.New(testutil.ServeTTRPC(t, srv), agentclient.Timeouts{})
	t.Cleanup(func() { client.Close() })

	recv := otlptest.Start(t)
	exp, err := otlp.New(context.Background(), recv.URL, "vessel-shim")
	if err != nil {
		t.Fatal(err)
	}
	ctx, root := exp.TracerProvider().Tracer("test").Start(context.Background(), "root")

	// Without SetTraceAgent the agent records nothing.
	resp, err := client.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(resp.GetCapabilities(), agentv1.CapabilityTracing) {
		t.Errorf("capabilities %v lack %q", resp.GetCapabilities(), agentv1.CapabilityTracing)
	}
	spans, _, err := client.CollectSpans(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(spans) != 0 {
		t.Fatalf("the agent recorded %d span batches with tracing off, want 0", len(spans))
	}

	client.SetTraceAgent(true)
	if _, err := client.Check(ctx); err != nil {
		t.Fatal(err)
	}
	spans, dropped, err := client.CollectSpans(ctx)
	if err != nil || dropped != 0 {
		t.Fatalf("CollectSpans: %v, %d dropped", err, dropped)
	}
	exp.Upload(spans, func(err error) { t.Errorf("upload: %v", err) })
	root.End()
	if err := exp.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := recv.WaitFor(t, "the agent's Check span", 30*time.Second, func(s []otlptest.Span) bool {
		return otlptest.HasAll(s, "root", "vessel-agent Check")
	})
	server, _ := otlptest.Find(got, "vessel-agent Check")
	if server.Service != "vessel-agent" {
		t.Errorf("server span's service = %q, want vessel-agent", server.Service)
	}
	if want := []string{"agent Check", "root"}; !slices.Equal(otlptest.Ancestors(got, server), want) {
		t.Errorf("ancestors of the agent's span = %v, want %v", otlptest.Ancestors(got, server), want)
	}
}
