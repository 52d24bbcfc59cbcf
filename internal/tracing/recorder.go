package tracing

import (
	"context"
	"fmt"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	sdkresource "go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// DefaultRecorderLimit bounds the spans a Recorder keeps between two collections.
const DefaultRecorderLimit = 4096

// Recorder records spans only under a sampled remote parent (a traced host request; it
// never starts a trace of its own) and keeps them, converted to OTLP, until Collect. It is
// the agent's tracer: the guest has no route to a collector, so the host fetches the spans
// and exports them with its own.
type Recorder struct {
	tp *sdktrace.TracerProvider
	// limit bounds the spans kept.
	limit int

	// mu guards batches, spans and dropped.
	mu      sync.Mutex
	batches []*tracepb.ResourceSpans
	// spans counts the spans in batches.
	spans int
	// dropped counts spans lost to the limit since the last Collect.
	dropped uint32
}

// NewRecorder returns a recorder whose spans carry service.name = service and keeps at
// most limit spans (0: DefaultRecorderLimit).
func NewRecorder(service string, limit int) (*Recorder, error) {
	if limit <= 0 {
		limit = DefaultRecorderLimit
	}
	r := &Recorder{limit: limit}
	exp, err := otlptrace.New(context.Background(), recorderClient{r})
	if err != nil {
		return nil, fmt.Errorf("span recorder: %w", err)
	}
	res := sdkresource.NewSchemaless(attribute.String("service.name", service))
	// Spans are converted as each ends, so that they are in the buffer before the
	// response of the request that made them leaves.
	r.tp = sdktrace.NewTracerProvider(
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.NeverSample())),
		sdktrace.WithSyncer(exp),
		sdktrace.WithResource(res),
	)
	return r, nil
}

// StartServer starts a server span for an incoming request whose ttrpc metadata may carry
// the caller's trace context (Extract). Without a sampled parent the span does not record.
func (r *Recorder) StartServer(ctx context.Context, name string) (context.Context, trace.Span) {
	return r.tp.Tracer(Scope).Start(Extract(ctx), name, trace.WithSpanKind(trace.SpanKindServer))
}

// Collect returns the kept spans as a protobuf-encoded OTLP ExportTraceServiceRequest
// (nil when there are none) and how many were dropped, and forgets them.
func (r *Recorder) Collect() ([]byte, uint32, error) {
	r.mu.Lock()
	batches, dropped := r.batches, r.dropped
	r.batches, r.spans, r.dropped = nil, 0, 0
	r.mu.Unlock()
	if len(batches) == 0 {
		return nil, dropped, nil
	}
	b, err := EncodeSpans(batches)
	return b, dropped, err
}

// Shutdown ends the recorder; later spans are not recorded.
func (r *Recorder) Shutdown(ctx context.Context) error {
	if err := r.tp.Shutdown(ctx); err != nil {
		return fmt.Errorf("span recorder: %w", err)
	}
	return nil
}

func (r *Recorder) keep(batches []*tracepb.ResourceSpans) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, b := range batches {
		n := 0
		for _, ss := range b.GetScopeSpans() {
			n += len(ss.GetSpans())
		}
		if r.spans+n > r.limit {
			r.dropped += uint32(n) //nolint:gosec // n is bounded by the batch size
			continue
		}
		r.batches = append(r.batches, b)
		r.spans += n
	}
}

// recorderClient is the OTLP "transport" of a Recorder: it keeps what it is given.
type recorderClient struct{ r *Recorder }

func (recorderClient) Start(context.Context) error { return nil }
func (recorderClient) Stop(context.Context) error  { return nil }

func (c recorderClient) UploadTraces(_ context.Context, spans []*tracepb.ResourceSpans) error {
	c.r.keep(spans)
	return nil
}

// The OTLP ExportTraceServiceRequest is one field, repeated ResourceSpans resource_spans = 1;
// it is written here by hand so the agent does not link the collector's gRPC service code.
const resourceSpansField protowire.Number = 1

// EncodeSpans encodes spans as a protobuf OTLP ExportTraceServiceRequest.
func EncodeSpans(spans []*tracepb.ResourceSpans) ([]byte, error) {
	var b []byte
	for _, rs := range spans {
		m, err := proto.Marshal(rs)
		if err != nil {
			return nil, fmt.Errorf("encode spans: %w", err)
		}
		b = protowire.AppendTag(b, resourceSpansField, protowire.BytesType)
		b = protowire.AppendBytes(b, m)
	}
	return b, nil
}

// DecodeSpans decodes a protobuf OTLP ExportTraceServiceRequest (EncodeSpans,
// Recorder.Collect); fields other than resource_spans are skipped.
func DecodeSpans(b []byte) ([]*tracepb.ResourceSpans, error) {
	var out []*tracepb.ResourceSpans
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, fmt.Errorf("decode spans: %w", protowire.ParseError(n))
		}
		b = b[n:]
		if num != resourceSpansField || typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return nil, fmt.Errorf("decode spans: %w", protowire.ParseError(n))
			}
			b = b[n:]
			continue
		}
		m, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return nil, fmt.Errorf("decode spans: %w", protowire.ParseError(n))
		}
		b = b[n:]
		rs := &tracepb.ResourceSpans{}
		if err := proto.Unmarshal(m, rs); err != nil {
			return nil, fmt.Errorf("decode spans: %w", err)
		}
		out = append(out, rs)
	}
	return out, nil
}
