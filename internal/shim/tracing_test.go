package shim

import (
	"context"
	"testing"
	"time"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/ttrpc"

	"github.com/vessel-containers/vessel/internal/tracing"
	"github.com/vessel-containers/vessel/internal/tracing/otlp"
	"github.com/vessel-containers/vessel/internal/tracing/otlptest"
)

// TestSpanCall: with tracing on, a traced task call (Start) gets a "shim Start" root span
// with the request's ids, under which the call's own spans go; an untraced call (State)
// and any call with tracing off record nothing.
func TestSpanCall(t *testing.T) {
	recv := otlptest.Start(t)
	ctx := context.Background()
	s := &service{containers: map[string]*container{}}
	call := func(method, id, execID string) bool {
		var recording bool
		_, err := s.UnaryServerInterceptor()(ctx, func(v any) error {
			switch r := v.(type) {
			case *taskAPI.StartRequest:
				r.ID, r.ExecID = id, execID
			case *taskAPI.StateRequest:
				r.ID, r.ExecID = id, execID
			}
			return nil
		}, &ttrpc.UnaryServerInfo{FullMethod: "/containerd.task.v2.Task/" + method}, func(ctx context.Context, unmarshal func(any) error) (any, error) {
			var v any = &taskAPI.StartRequest{}
			if method == "State" {
				v = &taskAPI.StateRequest{}
			}
			if err := unmarshal(v); err != nil {
				return nil, err
			}
			recording = tracing.Recording(ctx)
			_, span := tracing.Start(ctx, "inner "+method)
			span.End()
			return nil, nil
		})
		if err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		return recording
	}
	if call("Start", "off", "") {
		t.Error("Start recorded with tracing off")
	}

	exp, err := otlp.New(ctx, recv.URL, "vessel-shim")
	if err != nil {
		t.Fatal(err)
	}
	s.exporter = exp
	if !call("Start", "c1", "e1") {
		t.Error("Start did not record with tracing on")
	}
	if call("State", "c1", "") {
		t.Error("State recorded: it is not a traced call")
	}
	s.shutdownTracing(ctx)

	spans := recv.WaitFor(t, "the Start spans", 30*time.Second, func(s []otlptest.Span) bool {
		return otlptest.HasAll(s, "shim Start", "inner Start")
	})
	root, _ := otlptest.Find(spans, "shim Start")
	if root.ParentID != "" || root.Attributes["container.id"] != "c1" || root.Attributes["exec.id"] != "e1" || root.Service != "vessel-shim" {
		t.Errorf("shim Start = %+v, want a root span of vessel-shim with container.id c1 and exec.id e1", root)
	}
	inner, _ := otlptest.Find(spans, "inner Start")
	if inner.ParentID != root.ID {
		t.Errorf("inner Start's parent = %s, want shim Start (%s)", inner.ParentID, root.ID)
	}
	for _, sp := range spans {
		if sp.Name != "shim Start" && sp.Name != "inner Start" {
			t.Errorf("unexpected span %q", sp.Name)
		}
	}
}
