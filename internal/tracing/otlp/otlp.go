// Package otlp exports Vessel's spans with OTLP over HTTP (protobuf): the host process's own
// spans through a batching tracer provider, and spans recorded elsewhere (the agent's,
// collected over the agent protocol) as they are.
package otlp

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdkresource "go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// DefaultPath is the OTLP/HTTP traces path, used when the endpoint URL has none.
const DefaultPath = "/v1/traces"

// uploadTimeout bounds one export request.
const uploadTimeout = 10 * time.Second

// Exporter sends spans to one OTLP/HTTP receiver.
type Exporter struct {
	client otlptrace.Client
	tp     *sdktrace.TracerProvider

	// mu guards closed; uploads counts the Upload goroutines, started only while !closed.
	mu      sync.Mutex
	closed  bool
	uploads sync.WaitGroup
}

// New returns an exporter to endpoint (an http or https URL; an empty path means
// DefaultPath) whose own spans carry service.name = service. Nothing is sent until spans
// end; a receiver that is down costs failed exports, logged by OpenTelemetry, never errors
// of the traced work.
func New(ctx context.Context, endpoint, service string) (*Exporter, error) {
	u, err := url.Parse(endpoint)
	if err != nil {
		return nil, fmt.Errorf("otlp endpoint %q: %w", endpoint, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("otlp endpoint %q: scheme %q, want http or https", endpoint, u.Scheme)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = DefaultPath
	}
	client := otlptracehttp.NewClient(otlptracehttp.WithEndpointURL(u.String()), otlptracehttp.WithTimeout(uploadTimeout))
	exp, err := otlptrace.New(ctx, client)
	if err != nil {
		return nil, fmt.Errorf("otlp exporter: %w", err)
	}
	res := sdkresource.NewSchemaless(attribute.String("service.name", service))
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(time.Second)),
		sdktrace.WithResource(res),
	)
	return &Exporter{client: client, tp: tp}, nil
}

// TracerProvider records the host process's spans; they are exported in batches.
func (e *Exporter) TracerProvider() trace.TracerProvider { return e.tp }

// Upload sends spans recorded elsewhere, in the background; Shutdown waits for it. A
// failure is passed to onErr (which may be nil).
func (e *Exporter) Upload(spans []*tracepb.ResourceSpans, onErr func(error)) {
	if len(spans) == 0 {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return
	}
	e.uploads.Add(1)
	go func() {
		defer e.uploads.Done()
		ctx, cancel := context.WithTimeout(context.Background(), uploadTimeout)
		defer cancel()
		if err := e.client.UploadTraces(ctx, spans); err != nil && onErr != nil {
			onErr(fmt.Errorf("export spans: %w", err))
		}
	}()
}

// Shutdown exports the spans still pending and stops the exporter: uploads in flight
// finish, later ones are dropped.
func (e *Exporter) Shutdown(ctx context.Context) error {
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
	e.uploads.Wait()
	// The provider's shutdown also stops the shared client.
	if err := e.tp.Shutdown(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("otlp exporter shutdown: %w", err)
	}
	return nil
}
