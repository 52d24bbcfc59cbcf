//go:build linux

package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
)

// The PortForward service relays the host's CRI port forwarding into the pod's network
// namespace: each forward is one TCP connection to a loopback port there, whose output is
// buffered in a stream (bounded like a process's output) for the host's long-polled reads.

// MaxPortForwards bounds the forwards open at once in a sandbox; each buffers at most
// streamLimit bytes of output.
const MaxPortForwards = 32

// maxPortForwardID bounds a forward's id.
const maxPortForwardID = 128

var _ agentv1.PortForwardService = (*Service)(nil)

// forward is one open port-forward connection.
type forward struct {
	conn *net.TCPConn
	// out buffers what the connection sent until the host reads it.
	out *stream
	// copied is closed when the copier from conn into out returned.
	copied chan struct{}
	// writeMu serializes writes, so that each request's deadline is its own.
	writeMu sync.Mutex
}

// close closes the connection and the stream and waits for the copier.
func (f *forward) close() {
	_ = f.conn.Close()
	f.out.close()
	<-f.copied
}

// portForward finds an open forward.
func (s *Service) portForward(id string) (*forward, error) {
	s.fwdMu.Lock()
	defer s.fwdMu.Unlock()
	f, ok := s.forwards[id]
	if !ok || f == nil {
		return nil, fmt.Errorf("port forward %q: %w", id, errdefs.ErrNotFound)
	}
	return f, nil
}

// PortForwardOpen connects to a loopback port in the pod's network namespace.
func (s *Service) PortForwardOpen(ctx context.Context, req *agentv1.PortForwardOpenRequest) (*agentv1.Empty, error) {
	id, port := req.GetId(), req.GetPort()
	if id == "" || len(id) > maxPortForwardID {
		return nil, fmt.Errorf("%w: port forward id must have 1 to %d bytes", errdefs.ErrInvalidArgument, maxPortForwardID)
	}
	if port == 0 || port > 65535 {
		return nil, fmt.Errorf("%w: port forward %q: port %d out of range", errdefs.ErrInvalidArgument, id, port)
	}
	s.mu.Lock()
	ready := s.sandbox != nil && s.sandbox.ready
	s.mu.Unlock()
	if !ready {
		return nil, fmt.Errorf("%w: port forward: no sandbox", errdefs.ErrFailedPrecondition)
	}
	s.fwdMu.Lock()
	if _, taken := s.forwards[id]; taken {
		s.fwdMu.Unlock()
		return nil, fmt.Errorf("%w: port forward %q is open already", errdefs.ErrAlreadyExists, id)
	}
	if len(s.forwards) >= MaxPortForwards {
		s.fwdMu.Unlock()
		return nil, fmt.Errorf("%w: port forward %q: %d forwards are open (the most a sandbox has)", errdefs.ErrResourceExhausted, id, MaxPortForwards)
	}
	if s.forwards == nil {
		s.forwards = make(map[string]*forward)
	}
	s.forwards[id] = nil // reserved while dialing
	s.fwdMu.Unlock()
	f, err := s.dialForward(ctx, port, req.GetIpv6())
	s.fwdMu.Lock()
	defer s.fwdMu.Unlock()
	if err != nil {
		delete(s.forwards, id)
		return nil, fmt.Errorf("port forward %q: %w", id, err)
	}
	s.forwards[id] = f
	return &agentv1.Empty{}, nil
}

// dialForward connects to the port on the pod namespace's loopback and starts the copier.
func (s *Service) dialForward(ctx context.Context, port uint32, ipv6 bool) (*forward, error) {
	ns, err := s.podNetNS() // network.go
	if err != nil {
		return nil, err
	}
	host := "127.0.0.1"
	if ipv6 {
		host = "::1"
	}
	addr := net.JoinHostPort(host, strconv.FormatUint(uint64(port), 10))
	conn, err := ns.DialTCP(ctx, addr)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("%w: connect to %s in the pod network namespace: %w", errdefs.ErrFailedPrecondition, addr, err)
		}
		return nil, fmt.Errorf("connect to %s in the pod network namespace: %w", addr, err)
	}
	f := &forward{conn: conn, out: newStream(), copied: make(chan struct{})}
	go func() { // owner: the forward; close stops it (the connection and stream close)
		defer close(f.copied)
		f.out.copyFrom(conn)
	}()
	return f, nil
}

// PortForwardWrite writes to the connection; the request's deadline bounds the write.
func (s *Service) PortForwardWrite(ctx context.Context, req *agentv1.PortForwardWriteRequest) (*agentv1.WriteStreamResponse, error) {
	f, err := s.portForward(req.GetId())
	if err != nil {
		return nil, err
	}
	f.writeMu.Lock()
	defer f.writeMu.Unlock()
	deadline, _ := ctx.Deadline() // zero: none
	if err := f.conn.SetWriteDeadline(deadline); err != nil {
		return nil, fmt.Errorf("port forward %q: %w", req.GetId(), err)
	}
	stop := context.AfterFunc(ctx, func() { _ = f.conn.SetWriteDeadline(time.Unix(1, 0)) })
	defer stop()
	n, err := f.conn.Write(req.GetData())
	if err != nil {
		return nil, fmt.Errorf("port forward %q: write: %w", req.GetId(), err)
	}
	return &agentv1.WriteStreamResponse{Len: uint32(n)}, nil //nolint:gosec // at most the request's size
}

// PortForwardRead long-polls what the connection sent.
func (s *Service) PortForwardRead(ctx context.Context, req *agentv1.PortForwardReadRequest) (*agentv1.ReadStreamResponse, error) {
	f, err := s.portForward(req.GetId())
	if err != nil {
		return nil, err
	}
	data, eof, err := f.out.Read(ctx, int(req.GetLen()))
	if err != nil {
		return nil, fmt.Errorf("port forward %q: read: %w", req.GetId(), err)
	}
	return &agentv1.ReadStreamResponse{Data: data, Eof: eof}, nil
}

// PortForwardCloseWrite shuts the connection's sending side down.
func (s *Service) PortForwardCloseWrite(_ context.Context, req *agentv1.PortForwardRequest) (*agentv1.Empty, error) {
	f, err := s.portForward(req.GetId())
	if err != nil {
		return nil, err
	}
	if err := f.conn.CloseWrite(); err != nil {
		return nil, fmt.Errorf("port forward %q: close write: %w", req.GetId(), err)
	}
	return &agentv1.Empty{}, nil
}

// PortForwardClose closes the connection and forgets it. An id that is not open is no
// error: the host closes every forward it opened, whatever happened to it.
func (s *Service) PortForwardClose(_ context.Context, req *agentv1.PortForwardRequest) (*agentv1.Empty, error) {
	s.fwdMu.Lock()
	f := s.forwards[req.GetId()]
	if f != nil {
		delete(s.forwards, req.GetId())
	}
	s.fwdMu.Unlock()
	if f != nil {
		f.close()
	}
	return &agentv1.Empty{}, nil
}

// closePortForwards closes every open forward.
func (s *Service) closePortForwards() {
	s.fwdMu.Lock()
	var open []*forward
	for id, f := range s.forwards {
		if f != nil {
			open = append(open, f)
			delete(s.forwards, id)
		}
	}
	s.fwdMu.Unlock()
	for _, f := range open {
		f.close()
	}
}
