package otlp_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/vessel-containers/vessel/internal/tracing"
	"github.com/vessel-containers/vessel/internal/tracing/otlp"
	"github.com/vessel-containers/vessel/internal/tracing/otlptest"
)

// TestExportOwnAndForeignSpans: the exporter's own spans and spans recorded elsewhere (a
// Recorder, as in the guest) reach an OTLP/HTTP receiver, in one trace.
func TestExportOwnAndForeignSpans(t *testing.T) {
	recv := otlptest.Start(t)
	exp, err := otlp.New(context.Background(), recv.URL, "host")
	if err != nil {
		t.Fatal(err)
	}
	_, root := exp.TracerProvider().Tracer("test").Start(context.Background(), "root")
	rec, err := tracing.NewRecorder("guest", 0)
	if err != nil {
		t.Fatal(err)
	}
	remote := trace.ContextWithRemoteSpanContext(context.Background(), root.SpanContext())
	_, guest := rec.StartServer(remote, "guest work")
	guest.End()
	root.End()
	b, _, err := rec.Collect()
	if err != nil {
		t.Fatal(err)
	}
	spans, err := tracing.DecodeSpans(b)
	if err != nil {
		t.Fatal(err)
	}
	exp.Upload(spans, func(err error) { t.Errorf("upload: %v", err) })
	if err := exp.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := recv.WaitFor(t, "root and guest work", 30*time.Second, func(s []otlptest.Span) bool {
		return otlptest.HasAll(s, "root", "guest work")
	})
	r, _ := otlptest.Find(got, "root")
	g, _ := otlptest.Find(got, "guest work")
	if r.Service != "host" || g.Service != "guest" {
		t.Errorf("services: root %q, guest work %q; want host and guest", r.Service, g.Service)
	}
	if g.ParentID != r.ID || g.TraceID != r.TraceID {
		t.Errorf("guest work: trace %s parent %s; want root's trace %s and parent %s", g.TraceID, g.ParentID, r.TraceID, r.ID)
	}
	// After Shutdown, uploads are dropped rather than started.
	exp.Upload(spans, func(err error) { t.Errorf("upload after shutdown: %v", err) })
}

func TestNewRefusesBadEndpoints(t *testing.T) {
	for _, ep := range []string{"127.0.0.1:4318", "grpc://127.0.0.1:4317", "://"} {
		if _, err := otlp.New(context.Background(), ep, "x"); err == nil || !strings.Contains(err.Error(), "otlp endpoint") {
			t.Errorf("New(%q): error %v, want one naming the otlp endpoint", ep, err)
		}
	}
}
