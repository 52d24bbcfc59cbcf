// Package session runs ttrpc server sessions over one long-lived byte stream: the guest end of
// a virtio-serial port. The port has no notion of connections, only of whether a host is
// attached, so the session layer invents them: it parses ttrpc frames (10-byte header: uint32
// big-endian payload length, uint32 stream id, one type byte, one flags byte, then the
// payload) and starts a new session when the host detaches (read returns EOF) or when a
// request's stream id does not increase over the last one seen (a client that reconnected
// before the guest saw the hang-up restarts its stream ids at 1). A new session starts only
// while the port reports a host attached: the device can deliver a new host's first bytes
// before it tells the guest that the host attached (see Mux.awaitHost).
//
// Each session is a virtual net.Conn handed out by Mux.Accept, so a plain ttrpc server serves
// it (`srv.Serve(ctx, mux)`). Writes from a session are assembled into whole frames and
// forwarded to the port only while that session is current; a stale session's frames are
// dropped so a reconnected client never sees answers meant for its predecessor.
//
// What one session can hold is bounded (limits.go): at most MaxInFlight requests and
// MaxInFlightBytes of them without a response (past that the mux answers a request itself
// with ResourceExhausted, so no handler goroutine starts for it), and maxBuffered bytes
// routed but not yet read.
package session

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/log"
)

const (
	// HeaderLen is the size of a ttrpc frame header.
	HeaderLen = 10
	// MaxPayload is ttrpc's largest message (messageLengthMax in ttrpc's channel.go).
	MaxPayload = 4 << 20

	typeRequest = 0x1

	defaultRetry = 50 * time.Millisecond
)

// Header is a parsed ttrpc frame header.
type Header struct {
	Length   uint32
	StreamID uint32
	Type     uint8
	Flags    uint8
}

// ParseHeader decodes a frame header from the first HeaderLen bytes of b.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderLen {
		return Header{}, fmt.Errorf("frame header needs %d bytes, got %d", HeaderLen, len(b))
	}
	return Header{
		Length:   binary.BigEndian.Uint32(b[0:4]),
		StreamID: binary.BigEndian.Uint32(b[4:8]),
		Type:     b[8],
		Flags:    b[9],
	}, nil
}

// Stats counts what the mux did; for logs, metrics and tests.
type Stats struct {
	// Sessions started so far.
	Sessions uint64
	// FramesIn forwarded to a session, FramesOut written to the port.
	FramesIn, FramesOut uint64
	// DroppedOut counts frames of stale sessions that were not written.
	DroppedOut uint64
	// Detaches counts EOFs seen on the port (host gone).
	Detaches uint64
	// Refused counts requests answered with ResourceExhausted by the mux itself: their
	// session was at MaxInFlight or MaxInFlightBytes.
	Refused uint64
	// DroppedIn counts frames dropped because their session buffered maxBuffered bytes.
	DroppedIn uint64
}

// Mux turns a port into a stream of sessions. It implements net.Listener.
type Mux struct {
	port  io.ReadWriter
	retry time.Duration
	// host tells whether a host is attached; nil when the port cannot tell (a plain
	// stream), and then sessions start as soon as their first request is read.
	host hostState

	accept    chan *Conn
	done      chan struct{}
	closeOnce sync.Once

	// writeMu serializes frame writes to the port so frames never interleave.
	writeMu sync.Mutex

	// mu guards cur and lastReq.
	mu sync.Mutex
	// cur is the current session; nil while no host is attached.
	cur *Conn
	// lastReq is the last request stream id seen in cur.
	lastReq uint32

	sessions, framesIn, framesOut, droppedOut, detaches, refused, droppedIn atomic.Uint64
}

// Option configures a Mux.
type Option func(*Mux)

// WithRetryInterval sets how often Run looks at the port again while no host is attached:
// after a read returned EOF, and while a request waits for its host's attach notice
// (awaitHost). The default is 50ms.
func WithRetryInterval(d time.Duration) Option {
	return func(m *Mux) { m.retry = d }
}

// NewMux returns a mux over port. Call Run to start reading it.
func NewMux(port io.ReadWriter, opts ...Option) *Mux {
	m := &Mux{
		port:   port,
		host:   hostStateOf(port),
		retry:  defaultRetry,
		accept: make(chan *Conn),
		done:   make(chan struct{}),
	}
	for _, o := range opts {
		o(m)
	}
	return m
}

// Stats returns counters.
func (m *Mux) Stats() Stats {
	return Stats{
		Sessions:   m.sessions.Load(),
		FramesIn:   m.framesIn.Load(),
		FramesOut:  m.framesOut.Load(),
		DroppedOut: m.droppedOut.Load(),
		Detaches:   m.detaches.Load(),
		Refused:    m.refused.Load(),
		DroppedIn:  m.droppedIn.Load(),
	}
}

// Run reads frames from the port and routes them to sessions until ctx is done, the mux is
// closed, or the port fails with an error other than EOF. A blocked port read cannot be
// interrupted: to stop Run promptly, close the mux and then the port (its Read then fails).
// Run ends the current session before returning.
func (m *Mux) Run(ctx context.Context) error {
	defer m.endSession(nil)
	hdr := make([]byte, HeaderLen)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-m.done:
			return net.ErrClosed
		default:
		}
		if _, err := io.ReadFull(m.port, hdr); err != nil {
			if err := m.onReadError(ctx, err); err != nil {
				return err
			}
			continue
		}
		h, _ := ParseHeader(hdr)
		if h.Length > MaxPayload {
			// ttrpc never sends this; the stream is garbage until the host detaches.
			// Skip the claimed payload like ttrpc's own reader does.
			if _, err := io.CopyN(io.Discard, m.port, int64(h.Length)); err != nil {
				if err := m.onReadError(ctx, err); err != nil {
					return err
				}
			}
			continue
		}
		frame := make([]byte, HeaderLen+int(h.Length))
		copy(frame, hdr)
		if _, err := io.ReadFull(m.port, frame[HeaderLen:]); err != nil {
			if err := m.onReadError(ctx, err); err != nil {
				return err
			}
			continue
		}
		if err := m.route(ctx, h, frame); err != nil {
			return err
		}
	}
}

// onReadError handles a failed port read. EOF (also in the middle of a frame) means the host
// detached: the current session ends, and after a short sleep reading resumes. Any other
// error is returned.
func (m *Mux) onReadError(ctx context.Context, err error) error {
	if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("read port: %w", err)
	}
	m.detaches.Add(1)
	m.endSession(nil)
	t := time.NewTimer(m.retry)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-m.done:
		return net.ErrClosed
	case <-t.C:
		return nil
	}
}

// endSession forgets the current session so the next request starts a new one, and lets the
// old session read to EOF. When only is not nil, the current session is ended only if it is
// only.
func (m *Mux) endSession(only *Conn) {
	m.mu.Lock()
	old := m.cur
	if old == nil || (only != nil && old != only) {
		m.mu.Unlock()
		return
	}
	m.cur = nil
	m.lastReq = 0
	m.mu.Unlock()
	old.endInput()
}

// route hands a frame to the current session, starting a new session first when needed.
func (m *Mux) route(ctx context.Context, h Header, frame []byte) error {
	if h.Type == typeRequest && m.host != nil && m.startsSession(h) {
		if err := m.awaitHost(ctx); err != nil {
			return err
		}
	}
	var started, old *Conn
	m.mu.Lock()
	if h.Type == typeRequest {
		if m.cur == nil || h.StreamID <= m.lastReq {
			old = m.cur
			m.cur = newConn(m)
			started = m.cur
		}
		m.lastReq = h.StreamID
	}
	cur := m.cur
	m.mu.Unlock()

	if old != nil {
		old.endInput()
	}
	if started != nil {
		m.sessions.Add(1)
		select {
		case m.accept <- started:
		case <-ctx.Done():
			return ctx.Err()
		case <-m.done:
			return net.ErrClosed
		}
	}
	if cur == nil {
		// A data frame with no session: nobody can take it.
		return nil
	}
	if h.Type == typeRequest {
		if why := cur.admit(h, len(frame)); why != nil {
			m.refused.Add(1)
			log.G(ctx).WithField("stream", h.StreamID).Warnf("session: refusing a request: %v", why)
			answer, err := refusal(h.StreamID, why)
			if err != nil {
				return err
			}
			return m.send(cur, answer)
		}
	}
	if !cur.push(frame) {
		m.droppedIn.Add(1)
		log.G(ctx).WithField("stream", h.StreamID).Warnf("session: dropping a frame of type %#x: the session's input is at its bound of %d bytes", h.Type, maxBuffered)
		return nil
	}
	m.framesIn.Add(1)
	return nil
}

// startsSession reports whether request h starts a new session.
func (m *Mux) startsSession(h Header) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cur == nil || h.StreamID <= m.lastReq
}

// awaitHost returns once the port reports a host attached. The device delivers a host's
// bytes at once but tells the guest that the host attached with a control message that
// the guest handles later, in a kernel worker: so a new host's first request can be read
// while the port still reports no host, and the read after it then finds no data and
// returns EOF. That EOF is the previous host's detach; taken for this host's, it would end
// the session holding the request, whose answer would never be written (a VM restored
// from a template would not answer its first Check). Hence a session starts only once its
// host shows. The current session ends at once: its host is gone.
func (m *Mux) awaitHost(ctx context.Context) error {
	attached, err := m.host.hostAttached()
	if err != nil || attached {
		return err
	}
	m.endSession(nil)
	log.G(ctx).Debug("session: a request came before its host's attach notice; waiting for the notice")
	t := time.NewTicker(m.retry)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-m.done:
			return net.ErrClosed
		case <-t.C:
		}
		if attached, err := m.host.hostAttached(); err != nil || attached {
			return err
		}
	}
}

// isCurrent reports whether c is the current session.
func (m *Mux) isCurrent(c *Conn) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cur == c
}

// send writes one whole frame of c to the port if c is the current session; otherwise the
// frame is dropped.
func (m *Mux) send(c *Conn, frame []byte) error {
	m.writeMu.Lock()
	defer m.writeMu.Unlock()
	if !m.isCurrent(c) {
		m.droppedOut.Add(1)
		return nil
	}
	for len(frame) > 0 {
		n, err := m.port.Write(frame)
		if err != nil {
			return fmt.Errorf("write port: %w", err)
		}
		frame = frame[n:]
	}
	m.framesOut.Add(1)
	return nil
}

// Accept returns the next session. It implements net.Listener.
func (m *Mux) Accept() (net.Conn, error) {
	select {
	case c := <-m.accept:
		return c, nil
	case <-m.done:
		return nil, net.ErrClosed
	}
}

// Close stops Accept and Run (Run only between port reads). It does not close the port.
func (m *Mux) Close() error {
	m.closeOnce.Do(func() { close(m.done) })
	return nil
}

// Addr implements net.Listener.
func (m *Mux) Addr() net.Addr { return addr{} }

type addr struct{}

func (addr) Network() string { return "virtio-serial" }
func (addr) String() string  { return "virtio-serial session mux" }
