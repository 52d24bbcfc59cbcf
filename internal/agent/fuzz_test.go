//go:build linux

package agent

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc/codes"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
	"github.com/vessel-containers/vessel/internal/agent/policy"
	"github.com/vessel-containers/vessel/internal/testutil/ttrpcwire"
)

const agentServiceName = "vessel.agent.v1.Agent"

// fuzzService is a real Service whose handlers that need root and change the machine the
// test runs on are stopped after ttrpc decoded their request (the generated method
// unmarshals it before calling the handler): the guest's hostname, resolv.conf, storages
// and mounts (CreateSandbox), its network (UpdateInterface, UpdateRoutes, AddARPNeighbors),
// its clock (SetGuestDateTime), its entropy pool (ReseedRandomDev) and a container run by
// libcontainer (WarmUp). Everything else runs for real, confined to temporary directories:
// with no sandbox, CreateContainer stops at its validation (it refuses before mounting
// anything), and every container request reaches its lookup.
type fuzzService struct{ *Service }

var errNotDispatched = fmt.Errorf("%w: not dispatched by the fuzz target: the handler changes the machine", errdefs.ErrNotImplemented)

func (fuzzService) CreateSandbox(context.Context, *agentv1.CreateSandboxRequest) (*agentv1.Empty, error) {
	return nil, errNotDispatched
}

func (fuzzService) UpdateInterface(context.Context, *agentv1.UpdateInterfaceRequest) (*agentv1.Interface, error) {
	return nil, errNotDispatched
}

func (fuzzService) UpdateRoutes(context.Context, *agentv1.UpdateRoutesRequest) (*agentv1.Routes, error) {
	return nil, errNotDispatched
}

func (fuzzService) AddARPNeighbors(context.Context, *agentv1.AddARPNeighborsRequest) (*agentv1.Empty, error) {
	return nil, errNotDispatched
}

func (fuzzService) SetGuestDateTime(context.Context, *agentv1.SetGuestDateTimeRequest) (*agentv1.Empty, error) {
	return nil, errNotDispatched
}

func (fuzzService) ReseedRandomDev(context.Context, *agentv1.ReseedRandomDevRequest) (*agentv1.Empty, error) {
	return nil, errNotDispatched
}

func (fuzzService) WarmUp(context.Context, *agentv1.WarmUpRequest) (*agentv1.Empty, error) {
	return nil, errNotDispatched
}

// SetPolicy parses the policy for real and reports its digest, but puts nothing in force:
// a policy from one input would deny the requests of the next.
func (fuzzService) SetPolicy(_ context.Context, req *agentv1.SetPolicyRequest) (*agentv1.SetPolicyResponse, error) {
	p, err := policy.Parse(req.GetPolicy())
	if err != nil {
		return nil, err
	}
	return &agentv1.SetPolicyResponse{Digest: p.Digest()}, nil
}

// CopyFile runs for real in the test's run directory: a path under the guest's
// /run/vessel (as the host sends them) is moved under it.
func (f fuzzService) CopyFile(ctx context.Context, req *agentv1.CopyFileRequest) (*agentv1.Empty, error) {
	if rest, ok := strings.CutPrefix(req.GetPath(), DefaultConfig().RunDir); ok {
		req.Path = f.cfg.RunDir + rest
	}
	return f.Service.CopyFile(ctx, req)
}

// longPoll bounds the handlers that wait for the guest to change (an OOM kill, CPUs coming
// online), which never happens in the test: an iteration must end in milliseconds, not at
// the handler's own bound (OnlineCPUMem waits up to 10s).
const longPoll = 5 * time.Millisecond

func (f fuzzService) GetOOMEvent(ctx context.Context, req *agentv1.GetOOMEventRequest) (*agentv1.OOMEvent, error) {
	ctx, cancel := context.WithTimeout(ctx, longPoll)
	defer cancel()
	return f.Service.GetOOMEvent(ctx, req)
}

func (f fuzzService) OnlineCPUMem(ctx context.Context, req *agentv1.OnlineCPUMemRequest) (*agentv1.Empty, error) {
	ctx, cancel := context.WithTimeout(ctx, longPoll)
	defer cancel()
	return f.Service.OnlineCPUMem(ctx, req)
}

// agentMethods lists the service's methods, by name.
func agentMethods() []string {
	typ := reflect.TypeFor[agentv1.AgentService]()
	names := make([]string, typ.NumMethod())
	for i := range names {
		names[i] = typ.Method(i).Name
	}
	slices.Sort(names)
	return names
}

// pipeListener hands out the server ends of net.Pipe connections.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error { l.once.Do(func() { close(l.done) }); return nil }

func (l *pipeListener) Addr() net.Addr { return &net.UnixAddr{Name: "fuzz", Net: "pipe"} }

func (l *pipeListener) dial() (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// panicHook records log entries about a panic: the server's interceptor turns a handler's
// panic into an error response and logs it; for the fuzz target it is a crash.
type panicHook struct {
	mu     sync.Mutex
	panics []string
}

func (h *panicHook) Levels() []logrus.Level { return []logrus.Level{logrus.ErrorLevel} }

func (h *panicHook) Fire(e *logrus.Entry) error {
	if strings.Contains(e.Message, "panic") {
		h.mu.Lock()
		h.panics = append(h.panics, e.Message)
		h.mu.Unlock()
	}
	return nil
}

func (h *panicHook) take() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.panics
	h.panics = nil
	return p
}

// FuzzAgentRequest sends one ttrpc request frame to the agent's real ttrpc server and
// service (fuzzService says which handlers stop after decoding) and checks that it is
// answered, without a panic. method picks the method (a name that is not one is mapped onto
// one, so mutations keep reaching handlers); payload is the method's protobuf request, or
// with raw set the whole ttrpc Request message, so the ttrpc decoder itself gets arbitrary
// bytes too.
func FuzzAgentRequest(f *testing.F) {
	methods := agentMethods()
	f.Add("Check", []byte{}, false)
	for _, m := range methods {
		f.Add(m, []byte{0x0a, 0x02, 'c', '1'}, false) // field 1 (container_id or similar) = "c1"
	}
	hook := &panicHook{}
	logger := logrus.New()
	logger.SetOutput(io.Discard)
	logger.AddHook(hook)
	ctx := log.WithLogger(context.Background(), logrus.NewEntry(logger))

	root := f.TempDir()
	cfg := DefaultConfig()
	cfg.RunDir = root + "/run"
	cfg.SysDir = root + "/sys"
	cfg.CgroupRoot = root + "/cgroup"
	// No sandbox is ever created (CreateSandbox is not dispatched), so no container is
	// either: the service's state stays empty and one instance serves every input. Only
	// CopyFile leaves something behind, in RunDir, which each iteration empties.
	svc := NewService(cfg)
	srv, err := NewServer(fuzzService{svc}, svc.PolicyGate())
	if err != nil {
		f.Fatal(err)
	}
	l := &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(ctx, l)
	}()
	f.Cleanup(func() {
		_ = srv.Close()
		_ = l.Close()
		<-served
	})

	f.Fuzz(func(t *testing.T, method string, payload []byte, raw bool) {
		if err := os.RemoveAll(cfg.RunDir); err != nil {
			t.Fatal(err)
		}
		method, body, err := ttrpcwire.FuzzBody(agentServiceName, methods, method, payload, raw)
		if err != nil {
			t.Fatal(err)
		}
		// A handler's error is an answer like any other; what must not happen is no
		// answer (a hang, a dead server) or a panic.
		if _, err := roundTrip(l, body); err != nil {
			t.Fatalf("%s (raw %v): %v", method, raw, err)
		}
		if p := hook.take(); len(p) > 0 {
			t.Fatalf("%s (raw %v) panicked: %v", method, raw, p)
		}
	})
}

// roundTrip sends body as a request on a new connection to l (ttrpcwire.RoundTrip).
func roundTrip(l *pipeListener, body []byte) (*ttrpc.Response, error) {
	conn, err := l.dial()
	if err != nil {
		return nil, err
	}
	return ttrpcwire.RoundTrip(conn, body)
}

// TestUndecodableRequestIsInvalidArgument sends a request whose payload is not the method's
// message: the answer is InvalidArgument, the caller's fault, not Internal.
func TestUndecodableRequestIsInvalidArgument(t *testing.T) {
	svc := NewService(DefaultConfig())
	srv, err := NewServer(fuzzService{svc}, svc.PolicyGate())
	if err != nil {
		t.Fatal(err)
	}
	l := &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(context.Background(), l)
	}()
	defer func() {
		_ = srv.Close()
		_ = l.Close()
		<-served
	}()
	// Field 1 of SignalProcessRequest (container_id) is a proto3 string: invalid UTF-8 there
	// cannot be decoded.
	body, err := ttrpcwire.Request(agentServiceName, "SignalProcess", []byte{0x0a, 0x01, 0xff})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := roundTrip(l, body)
	if err != nil || resp == nil {
		t.Fatalf("no answer: %v", err)
	}
	if got := codes.Code(resp.GetStatus().GetCode()); got != codes.InvalidArgument {
		t.Errorf("undecodable request answered %v (%q), want InvalidArgument", got, resp.GetStatus().GetMessage())
	}
}
