// Package otlptest is an in-process OTLP/HTTP trace receiver for tests: it decodes what
// exporters send to /v1/traces and lets a test wait for the spans it expects.
package otlptest

import (
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/protobuf/proto"
)

// Span is one received span, flattened.
type Span struct {
	Service               string
	Name                  string
	TraceID, ID, ParentID string
	Kind                  int32
	Start, End            time.Time
	Failed                bool
	// Attributes are the span's attributes of string value.
	Attributes map[string]string
}

// Receiver is an OTLP/HTTP (protobuf) trace receiver on a loopback port.
type Receiver struct {
	// URL is the receiver's base URL: http://127.0.0.1:port.
	URL string
	srv *http.Server

	// mu guards spans and changed.
	mu    sync.Mutex
	spans []Span
	// changed is closed and replaced whenever spans arrive.
	changed chan struct{}
}

// Start starts a receiver that stops when the test ends.
func Start(t testing.TB) *Receiver {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &Receiver{URL: "http://" + l.Addr().String(), changed: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", r.handle)
	r.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() { // owner: the test; ends when the server is closed in Cleanup
		defer close(done)
		_ = r.srv.Serve(l)
	}()
	t.Cleanup(func() {
		_ = r.srv.Close()
		<-done
	})
	return r
}

func (r *Receiver) handle(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var msg collectorpb.ExportTraceServiceRequest
	if err := proto.Unmarshal(body, &msg); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var got []Span
	for _, rs := range msg.GetResourceSpans() {
		service := ""
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				service = kv.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				attrs := map[string]string{}
				for _, kv := range s.GetAttributes() {
					if v, ok := kv.GetValue().GetValue().(*commonpb.AnyValue_StringValue); ok {
						attrs[kv.GetKey()] = v.StringValue
					}
				}
				got = append(got, Span{
					Attributes: attrs,
					Service:    service, Name: s.GetName(),
					TraceID: hex.EncodeToString(s.GetTraceId()), ID: hex.EncodeToString(s.GetSpanId()),
					ParentID: hex.EncodeToString(s.GetParentSpanId()), Kind: int32(s.GetKind()),
					Start:  time.Unix(0, int64(s.GetStartTimeUnixNano())), //nolint:gosec // test data
					End:    time.Unix(0, int64(s.GetEndTimeUnixNano())),   //nolint:gosec // test data
					Failed: s.GetStatus().GetCode() == 2,
				})
			}
		}
	}
	r.mu.Lock()
	r.spans = append(r.spans, got...)
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-protobuf")
	b, _ := proto.Marshal(&collectorpb.ExportTraceServiceResponse{})
	_, _ = w.Write(b)
}

// Spans returns the spans received so far.
func (r *Receiver) Spans() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Span(nil), r.spans...)
}

// WaitFor waits until done reports true for the spans received so far, re-checking each
// time spans arrive, and fails the test after timeout naming what it waited for.
func (r *Receiver) WaitFor(t testing.TB, what string, timeout time.Duration, done func([]Span) bool) []Span {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		spans := append([]Span(nil), r.spans...)
		changed := r.changed
		r.mu.Unlock()
		if done(spans) {
			return spans
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("timed out after %s waiting for %s; got %d spans: %v", timeout, what, len(spans), Names(spans))
		}
	}
}

// Names lists "service/name" of spans.
func Names(spans []Span) []string {
	out := make([]string, 0, len(spans))
	for _, s := range spans {
		out = append(out, s.Service+"/"+s.Name)
	}
	return out
}

// Find returns the first span named name, if any.
func Find(spans []Span, name string) (Span, bool) {
	for _, s := range spans {
		if s.Name == name {
			return s, true
		}
	}
	return Span{}, false
}

// HasAll reports whether a span of every name is among spans.
func HasAll(spans []Span, names ...string) bool {
	for _, n := range names {
		if _, ok := Find(spans, n); !ok {
			return false
		}
	}
	return true
}

// Ancestors returns the names of s's ancestors among spans, nearest first; it stops at a
// parent that is not among them.
func Ancestors(spans []Span, s Span) []string {
	byID := make(map[string]Span, len(spans))
	for _, x := range spans {
		byID[x.ID] = x
	}
	var out []string
	for seen := 0; s.ParentID != "" && seen < len(spans); seen++ {
		p, ok := byID[s.ParentID]
		if !ok {
			break
		}
		out = append(out, p.Name)
		s = p
	}
	return out
}
