package session

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/containerd/ttrpc"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
)

// testPort is the guest end of a virtio-serial port: hosts attach (a net.Pipe) and detach.
// Like the device, Read returns EOF at once while no host is attached and writes made while
// detached are lost. Every Write call is recorded so tests can check frame boundaries.
type testPort struct {
	mu sync.Mutex
	// guest is the guest end of the attached host line, nil when detached.
	guest  net.Conn
	closed bool
	writes [][]byte
}

func (p *testPort) attach() net.Conn {
	host, guest := net.Pipe()
	p.mu.Lock()
	p.guest = guest
	p.mu.Unlock()
	return host
}

func (p *testPort) Read(b []byte) (int, error) {
	p.mu.Lock()
	g, closed := p.guest, p.closed
	p.mu.Unlock()
	if closed {
		return 0, net.ErrClosed
	}
	if g == nil {
		return 0, io.EOF
	}
	n, err := g.Read(b)
	if err != nil {
		p.mu.Lock()
		if p.guest == g {
			p.guest = nil
		}
		p.mu.Unlock()
		return n, io.EOF
	}
	return n, nil
}

func (p *testPort) Write(b []byte) (int, error) {
	p.mu.Lock()
	g := p.guest
	p.writes = append(p.writes, append([]byte(nil), b...))
	p.mu.Unlock()
	if g != nil {
		_, _ = g.Write(b) // lost when the host went away, like the device
	}
	return len(b), nil
}

func (p *testPort) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	if p.guest != nil {
		return p.guest.Close()
	}
	return nil
}

func (p *testPort) recorded() [][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([][]byte(nil), p.writes...)
}

// relay lets successive clients share one attached host line, so the guest never sees a
// hang-up between them: the immediate-reconnect case.
type relay struct {
	host net.Conn
	// mu guards cur.
	mu  sync.Mutex
	cur *io.PipeWriter
}

func newRelay(host net.Conn) *relay {
	r := &relay{host: host}
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := host.Read(buf)
			if err != nil {
				return
			}
			r.mu.Lock()
			w := r.cur
			r.mu.Unlock()
			if w != nil {
				_, _ = w.Write(buf[:n])
			}
		}
	}()
	return r
}

func (r *relay) dial() net.Conn {
	pr, pw := io.Pipe()
	r.mu.Lock()
	r.cur = pw
	r.mu.Unlock()
	return &relayConn{Conn: r.host, r: r, pr: pr, pw: pw}
}

type relayConn struct {
	net.Conn
	r  *relay
	pr *io.PipeReader
	pw *io.PipeWriter
}

func (c *relayConn) Read(b []byte) (int, error) { return c.pr.Read(b) }
func (c *relayConn) Close() error {
	c.r.mu.Lock()
	if c.r.cur == c.pw {
		c.r.cur = nil
	}
	c.r.mu.Unlock()
	return c.pr.Close()
}

type echoReq = agentv1.ReadStreamRequest
type echoResp = agentv1.ReadStreamResponse

// startServer runs a mux over port and a ttrpc server with an Echo method that returns
// ContainerId repeated Len times.
func startServer(t *testing.T, port io.ReadWriteCloser) *Mux {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	m := NewMux(port, WithRetryInterval(2*time.Millisecond))
	srv, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	srv.RegisterService("test.Echo", &ttrpc.ServiceDesc{Methods: map[string]ttrpc.Method{
		"Echo": func(ctx context.Context, unmarshal func(any) error) (any, error) {
			var req echoReq
			if err := unmarshal(&req); err != nil {
				return nil, err
			}
			return &echoResp{Data: bytes.Repeat([]byte(req.ContainerId), int(req.Len))}, nil
		},
	}})
	runDone := make(chan error, 1)
	serveDone := make(chan error, 1)
	go func() { runDone <- m.Run(ctx) }()
	go func() { serveDone <- srv.Serve(ctx, m) }()
	t.Cleanup(func() {
		cancel()
		_ = srv.Close()
		_ = port.Close()
		for _, ch := range []chan error{runDone, serveDone} {
			select {
			case err := <-ch:
				_ = err // context.Canceled or ErrServerClosed: either is a clean stop
			case <-time.After(5 * time.Second):
				t.Error("mux or server did not stop")
			}
		}
	})
	return m
}

func echo(t *testing.T, c *ttrpc.Client, s string, n uint32) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var resp echoResp
	if err := c.Call(ctx, "test.Echo", "Echo", &echoReq{ContainerId: s, Len: n}, &resp); err != nil {
		t.Fatalf("echo: %v", err)
	}
	if got, want := resp.Data, bytes.Repeat([]byte(s), int(n)); !bytes.Equal(got, want) {
		t.Fatalf("echo returned %d bytes, want %d", len(got), len(want))
	}
}

func TestParseHeader(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		want Header
		err  bool
	}{
		{"request", []byte{0, 0, 1, 0, 0, 0, 0, 3, 1, 0}, Header{Length: 256, StreamID: 3, Type: 1}, false},
		{"data with flags", []byte{0, 0, 0, 0, 0, 0, 0, 5, 3, 5}, Header{StreamID: 5, Type: 3, Flags: 5}, false},
		{"short", []byte{0, 0, 0}, Header{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseHeader(tc.in)
			if (err != nil) != tc.err {
				t.Fatalf("err = %v, want error %v", err, tc.err)
			}
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestCallsWriteWholeFrames(t *testing.T) {
	port := &testPort{}
	m := startServer(t, port)
	c := ttrpc.NewClient(port.attach())
	defer c.Close()
	echo(t, c, "x", 1)
	echo(t, c, "big", 100_000) // 300 KB answer: ttrpc writes it in several pieces
	for i, w := range port.recorded() {
		h, err := ParseHeader(w)
		if err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		if got, want := len(w), HeaderLen+int(h.Length); got != want {
			t.Fatalf("write %d is %d bytes, want one whole frame of %d", i, got, want)
		}
	}
	// The counter moves just after the write the client already read.
	waitFor(t, func() bool { return m.Stats().FramesOut == 2 })
}

func TestNewSessionOnEOF(t *testing.T) {
	port := &testPort{}
	host := port.attach() // before the server starts: a read with no host is a detach
	m := startServer(t, port)
	c1 := ttrpc.NewClient(host)
	echo(t, c1, "a", 3)
	c1.Close() // the host end closes: the guest reads EOF
	waitFor(t, func() bool { return m.Stats().Detaches > 0 })
	c2 := ttrpc.NewClient(port.attach())
	defer c2.Close()
	echo(t, c2, "b", 3)
	echo(t, c2, "c", 3)
	if got := m.Stats().Sessions; got != 2 {
		t.Fatalf("sessions = %d, want 2", got)
	}
}

func TestNewSessionOnStreamIDReuse(t *testing.T) {
	port := &testPort{}
	// Attach before the server starts: a read with no host attached is a detach.
	r := newRelay(port.attach())
	m := startServer(t, port)
	c1 := ttrpc.NewClient(r.dial())
	echo(t, c1, "a", 1)
	echo(t, c1, "a", 2)
	c1.Close() // the guest never sees a hang-up
	c2 := ttrpc.NewClient(r.dial())
	defer c2.Close()
	echo(t, c2, "b", 1) // stream id 1 again
	echo(t, c2, "b", 2)
	st := m.Stats()
	if st.Sessions != 2 || st.Detaches != 0 {
		t.Fatalf("stats = %+v, want 2 sessions and no detach", st)
	}
}

func frame(streamID uint32, typ uint8, payload string) []byte {
	b := make([]byte, HeaderLen+len(payload))
	binary.BigEndian.PutUint32(b[0:4], uint32(len(payload)))
	binary.BigEndian.PutUint32(b[4:8], streamID)
	b[8] = typ
	copy(b[HeaderLen:], payload)
	return b
}

func readFrame(t *testing.T, c net.Conn) []byte {
	t.Helper()
	b, err := readFrameErr(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readFrameErr(c net.Conn) ([]byte, error) {
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	hdr := make([]byte, HeaderLen)
	if _, err := io.ReadFull(c, hdr); err != nil {
		return nil, fmt.Errorf("read frame header: %w", err)
	}
	h, _ := ParseHeader(hdr)
	body := make([]byte, h.Length)
	if _, err := io.ReadFull(c, body); err != nil {
		return nil, fmt.Errorf("read frame body: %w", err)
	}
	return append(hdr, body...), nil
}

func TestStaleSessionWritesDropped(t *testing.T) {
	port := &testPort{}
	m := NewMux(port, WithRetryInterval(time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- m.Run(ctx) }()
	host := port.attach()
	defer func() {
		cancel()
		_ = m.Close()
		_ = port.Close()
		if err := <-runDone; err == nil {
			t.Error("Run returned nil")
		}
	}()

	writeHost := func(b []byte) {
		t.Helper()
		if _, err := host.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	writeHost(frame(1, typeRequest, "one"))
	s1, err := m.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if got := readFrame(t, s1); !bytes.Equal(got, frame(1, typeRequest, "one")) {
		t.Fatalf("session 1 read %q", got)
	}
	writeHost(frame(1, typeRequest, "two")) // stream id does not increase
	s2, err := m.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if got := readFrame(t, s2); !bytes.Equal(got, frame(1, typeRequest, "two")) {
		t.Fatalf("session 2 read %q", got)
	}
	// Session 1 has ended: it reads EOF.
	if n, err := s1.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("stale session read = %d, %v; want EOF", n, err)
	}

	if _, err := s1.Write(frame(1, 2, "stale")); err != nil {
		t.Fatalf("stale write: %v", err)
	}
	resp := frame(1, 2, "fresh")
	hostRead := make(chan []byte, 1)
	go func() {
		b, err := readFrameErr(host)
		if err != nil {
			b = []byte(err.Error())
		}
		hostRead <- b
	}()
	// A frame written in two pieces reaches the port as one write.
	if _, err := s2.Write(resp[:4]); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Write(resp[4:]); err != nil {
		t.Fatal(err)
	}
	if got := <-hostRead; !bytes.Equal(got, resp) {
		t.Fatalf("host read %q, want %q", got, resp)
	}
	writes := port.recorded()
	if len(writes) != 1 || !bytes.Equal(writes[0], resp) {
		t.Fatalf("port writes = %q, want only the fresh frame", writes)
	}
	if got := m.Stats().DroppedOut; got != 1 {
		t.Fatalf("dropped = %d, want 1", got)
	}

	// Closing the current session makes the next request start a new one.
	_ = s2.Close()
	writeHost(frame(3, typeRequest, "three"))
	s3, err := m.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if got := readFrame(t, s3); !bytes.Equal(got, frame(3, typeRequest, "three")) {
		t.Fatalf("session 3 read %q", got)
	}
}

func TestRunStops(t *testing.T) {
	port := &testPort{}
	m := NewMux(port, WithRetryInterval(time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	time.Sleep(10 * time.Millisecond) // a few EOF retries while detached
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Run = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not stop")
	}
	_ = m.Close()
	if _, err := m.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close = %v", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestWriteAssemblesFrames: frames reach the port whole and one per write, however the
// session's writes cut them: two in one write, one a byte at a time (its header too).
func TestWriteAssemblesFrames(t *testing.T) {
	port := &testPort{}
	m := NewMux(port, WithRetryInterval(time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- m.Run(ctx) }()
	host := port.attach()
	defer func() {
		cancel()
		_ = m.Close()
		_ = port.Close()
		if err := <-runDone; err == nil {
			t.Error("Run returned nil")
		}
	}()
	if _, err := host.Write(frame(1, typeRequest, "req")); err != nil {
		t.Fatal(err)
	}
	s, err := m.Accept()
	if err != nil {
		t.Fatal(err)
	}
	readFrame(t, s)
	want := [][]byte{frame(1, 2, "first"), frame(3, 2, ""), frame(5, 2, "third, cut in pieces")}
	hostRead := make(chan error, 1)
	go func() {
		for range want {
			if _, err := readFrameErr(host); err != nil {
				hostRead <- err
				return
			}
		}
		hostRead <- nil
	}()
	if _, err := s.Write(append(append([]byte(nil), want[0]...), want[1]...)); err != nil {
		t.Fatal(err)
	}
	for i := range want[2] {
		if _, err := s.Write(want[2][i : i+1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-hostRead; err != nil {
		t.Fatal(err)
	}
	got := port.recorded()
	if len(got) != len(want) {
		t.Fatalf("port got %d writes %q, want %d", len(got), got, len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Errorf("port write %d = %q, want %q", i, got[i], want[i])
		}
	}
}
