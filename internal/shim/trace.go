package shim

import (
	"context"
	"path"
	"time"

	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
)

// UnaryServerInterceptor wraps every task API call: while tracing is on, the calls of
// tracedCalls get a span (spanCall, tracing.go); at debug level it logs each call when
// it returns ("task api" with method, id, exec_id, took and error), which gives a timeline
// of a container's life in containerd's log (the benchmark harness reads it). containerd's
// shim package installs it because the task service implements its
// TTRPCServerUnaryOptioner.
func (s *service) UnaryServerInterceptor() ttrpc.UnaryServerInterceptor {
	return func(ctx context.Context, unmarshal ttrpc.Unmarshaler, info *ttrpc.UnaryServerInfo, method ttrpc.Method) (any, error) {
		return s.spanCall(ctx, unmarshal, info, func(ctx context.Context, unmarshal func(any) error) (any, error) {
			return traceCall(ctx, unmarshal, info, method)
		})
	}
}

// requestIDs is what task API requests share: the container id and, for processes, the
// exec id.
type requestIDs interface {
	GetID() string
}

type requestExecID interface {
	GetExecID() string
}

func traceCall(ctx context.Context, unmarshal ttrpc.Unmarshaler, info *ttrpc.UnaryServerInfo, method ttrpc.Method) (any, error) {
	logger := log.G(ctx)
	if !logger.Logger.IsLevelEnabled(log.DebugLevel) {
		return method(ctx, unmarshal)
	}
	start := time.Now()
	var id, execID string
	resp, err := method(ctx, func(v any) error {
		err := unmarshal(v)
		if r, ok := v.(requestIDs); ok {
			id = r.GetID()
		}
		if r, ok := v.(requestExecID); ok {
			execID = r.GetExecID()
		}
		return err
	})
	entry := logger.WithField("method", path.Base(info.FullMethod)).WithField("id", id).WithField("took", time.Since(start))
	if execID != "" {
		entry = entry.WithField("exec_id", execID)
	}
	if err != nil {
		entry = entry.WithError(err)
	}
	entry.Debug("task api")
	return resp, err
}
