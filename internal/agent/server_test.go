//go:build linux

package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
	"github.com/vessel-containers/vessel/internal/agent/policy"
	"github.com/vessel-containers/vessel/internal/agentclient"
)

// failingCheck answers Check with err; every other method is absent (nil embedded service).
type failingCheck struct {
	agentv1.AgentService
	err error
}

func (f failingCheck) Check(context.Context, *agentv1.CheckRequest) (*agentv1.CheckResponse, error) {
	return nil, f.err
}

// TestErrorsCrossTheEdge sends errors from a service through NewServer's ttrpc edge to the
// host's agentclient: errdefs kinds arrive as the same kinds, with their message, and an
// error of no kind arrives as Unknown.
func TestErrorsCrossTheEdge(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		is   func(error) bool
	}{
		{"not found", errdefs.ErrNotFound, errdefs.IsNotFound},
		{"already exists", errdefs.ErrAlreadyExists, errdefs.IsAlreadyExists},
		{"invalid argument", errdefs.ErrInvalidArgument, errdefs.IsInvalidArgument},
		{"failed precondition", errdefs.ErrFailedPrecondition, errdefs.IsFailedPrecondition},
		{"conflict", errdefs.ErrConflict, errdefs.IsConflict},
		{"not implemented", errdefs.ErrNotImplemented, errdefs.IsNotImplemented},
		{"unavailable", errdefs.ErrUnavailable, errdefs.IsUnavailable},
		{"permission denied", errdefs.ErrPermissionDenied, errdefs.IsPermissionDenied},
		{"resource exhausted", errdefs.ErrResourceExhausted, errdefs.IsResourceExhausted},
		{"canceled", context.Canceled, errdefs.IsCanceled},
		{"deadline", context.DeadlineExceeded, errdefs.IsDeadlineExceeded},
		{"status kept", status.Error(codes.Aborted, "kept"), errdefs.IsAborted},
		{"plain", errors.New("plain"), errdefs.IsUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sent := fmt.Errorf("container c1: %w", tc.err)
			_, err := serveClient(t, failingCheck{err: sent}).Check(context.Background())
			if err == nil {
				t.Fatalf("Check: got nil, want %v", sent)
			}
			if !tc.is(err) {
				t.Errorf("Check: got %v (%T), want the kind of %v", err, errors.Unwrap(err), tc.err)
			}
			if tc.name != "status kept" && !strings.Contains(err.Error(), "container c1") {
				t.Errorf("Check: got message %q, want it to keep %q", err, sent)
			}
		})
	}
}

// serveClient serves svc through NewServer on a unix socket and returns the host's client.
func serveClient(t *testing.T, svc agentv1.AgentService) *agentclient.Client {
	t.Helper()
	srv, err := NewServer(svc, gateOf(svc))
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", filepath.Join(t.TempDir(), "agent.sock"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { // owner: the test; ends when srv.Close closes the listener
		defer close(done)
		_ = srv.Serve(context.Background(), l)
	}()
	conn, err := net.Dial("unix", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := agentclient.New(conn, agentclient.Timeouts{})
	t.Cleanup(func() {
		_ = c.Close()
		_ = srv.Close()
		<-done
	})
	return c
}

// TestAgentTextIsEscaped: an error message is guest text; the host's client escapes it
// (no terminal escapes, no line breaks) and keeps its kind.
func TestAgentTextIsEscaped(t *testing.T) {
	sent := fmt.Errorf("container \x1b[2Jc1\nforged line: %w", errdefs.ErrNotFound)
	_, err := serveClient(t, failingCheck{err: sent}).Check(context.Background())
	if err == nil || !errdefs.IsNotFound(err) {
		t.Fatalf("Check: got %v, want a not-found error", err)
	}
	if msg := err.Error(); strings.ContainsAny(msg, "\x1b\n") || !strings.Contains(msg, `\x1b[2Jc1\x0aforged line`) {
		t.Errorf("Check: got message %q, want the guest's text escaped", msg)
	}
}

// gateOf is the policy gate of a real service, nil for a fake.
func gateOf(svc agentv1.AgentService) *policy.Gate {
	if s, ok := svc.(interface{ PolicyGate() *policy.Gate }); ok {
		return s.PolicyGate()
	}
	return nil
}
