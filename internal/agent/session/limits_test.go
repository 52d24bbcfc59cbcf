package session

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

// floodSession runs a mux over a test port whose session nobody answers, as a handler stuck
// on a long poll would, and returns the host end and the session.
func floodSession(t *testing.T) (*Mux, net.Conn, net.Conn) {
	t.Helper()
	port := &testPort{}
	host := port.attach()
	m := NewMux(port, WithRetryInterval(time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		_ = m.Close()
		_ = port.Close()
		_ = host.Close()
		if err := <-done; err == nil {
			t.Error("Run returned nil, want why it stopped")
		}
	})
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := m.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	if _, err := host.Write(frame(1, typeRequest, "first")); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-accepted:
		return m, host, c
	case <-time.After(5 * time.Second):
		t.Fatal("no session")
	}
	return nil, nil, nil
}

// wantRefusal reads a frame from the host end and checks it is the mux's ResourceExhausted
// answer to streamID naming limit.
func wantRefusal(t *testing.T, host net.Conn, streamID uint32, limit string) {
	t.Helper()
	f := readFrame(t, host)
	h, _ := ParseHeader(f)
	if h.StreamID != streamID || h.Type != typeResponse {
		t.Fatalf("got frame stream %d type %#x, want the response to stream %d", h.StreamID, h.Type, streamID)
	}
	var resp ttrpc.Response
	if err := proto.Unmarshal(f[HeaderLen:], &resp); err != nil {
		t.Fatalf("refusal is not a ttrpc response: %v", err)
	}
	if codes.Code(resp.Status.GetCode()) != codes.ResourceExhausted || !strings.Contains(resp.Status.GetMessage(), limit) {
		t.Fatalf("refusal status = %v, want ResourceExhausted naming %s", resp.Status, limit)
	}
}

// TestInFlightLimit: a host (or anything that can write the port) sends requests without
// waiting for answers. Past MaxInFlight the mux answers the request itself with
// ResourceExhausted instead of handing it to a handler goroutine; once one is answered,
// the next request is taken again.
func TestInFlightLimit(t *testing.T) {
	m, host, sess := floodSession(t)
	go func() { // the session's reader takes frames but answers none
		buf := make([]byte, 64<<10)
		for {
			if _, err := sess.Read(buf); err != nil {
				return
			}
		}
	}()
	for id := uint32(2); id <= MaxInFlight+1; id++ {
		if _, err := host.Write(frame(id, typeRequest, "req")); err != nil {
			t.Fatal(err)
		}
	}
	wantRefusal(t, host, MaxInFlight+1, "MaxInFlight")
	if got := m.Stats().Refused; got != 1 {
		t.Fatalf("refused = %d, want 1", got)
	}
	// The session answers stream 1; then a new request gets through.
	go func() { _, _ = sess.Write(frame(1, typeResponse, "answer")) }()
	if f := readFrame(t, host); string(f[HeaderLen:]) != "answer" {
		t.Fatalf("got %q, want the session's answer", f[HeaderLen:])
	}
	if _, err := host.Write(frame(MaxInFlight+2, typeRequest, "req")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return m.Stats().FramesIn == MaxInFlight+1 })
	if got := m.Stats().Refused; got != 1 {
		t.Fatalf("refused = %d after an answer freed a place, want 1", got)
	}
}

// TestInFlightBytesLimit: requests of the largest size, never answered, stop being taken at
// MaxInFlightBytes.
func TestInFlightBytesLimit(t *testing.T) {
	m, host, _ := floodSession(t) // nobody reads the session: its buffer grows
	payload := strings.Repeat("x", MaxPayload-HeaderLen)
	n := uint32(MaxInFlightBytes / MaxPayload)
	// The first request ("first", small) is in flight too: the n-th large one passes
	// the limit.
	for id := uint32(2); id <= n+1; id++ {
		if _, err := host.Write(frame(id, typeRequest, payload)); err != nil {
			t.Fatal(err)
		}
	}
	wantRefusal(t, host, n+1, "MaxInFlightBytes")
	if st := m.Stats(); st.Refused != 1 || st.FramesIn != uint64(n) {
		t.Fatalf("stats = %+v, want %d frames in and 1 refused", st, n)
	}
}

// TestSessionBufferBound: frames that are not requests (ttrpc stream data, which the agent's
// service does not use) are dropped once the session buffers maxBuffered bytes.
func TestSessionBufferBound(t *testing.T) {
	m, host, _ := floodSession(t)
	payload := strings.Repeat("d", MaxPayload-HeaderLen)
	count := maxBuffered/MaxPayload + 2
	for i := 0; i < count; i++ {
		if _, err := host.Write(frame(1, 0x3, payload)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool { return m.Stats().DroppedIn > 0 })
	st := m.Stats()
	if st.FramesIn*MaxPayload > maxBuffered+MaxPayload {
		t.Fatalf("stats = %+v: buffered past maxBuffered", st)
	}
}
