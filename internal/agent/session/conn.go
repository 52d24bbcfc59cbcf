package session

import (
	"encoding/binary"
	"io"
	"net"
	"sync"
	"time"
)

// Conn is one session: a virtual net.Conn. Read returns the frames the mux routed to it, in
// order, and EOF once the session has ended and everything was read. Write assembles whole
// frames and forwards them to the port while the session is current.
type Conn struct {
	m *Mux

	// mu guards in, inputDone, closed and out.
	mu   sync.Mutex
	cond *sync.Cond
	// in holds routed bytes not yet read.
	in []byte
	// inputDone is set when the mux ended the session: Read returns EOF once in is empty.
	inputDone bool
	// closed is set by Close.
	closed bool
	// out holds the start of a frame whose remaining bytes were not written yet.
	out []byte

	// flightMu guards flight.
	flightMu sync.Mutex
	// flight holds the session's requests that have no response yet.
	flight flight
}

func newConn(m *Mux) *Conn {
	c := &Conn{m: m}
	c.cond = sync.NewCond(&c.mu)
	return c
}

// push appends a routed frame. It reports false when the frame was dropped because the
// session already buffers maxBuffered bytes its reader has not taken.
func (c *Conn) push(frame []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.inputDone {
		return true
	}
	if len(c.in)+len(frame) > maxBuffered {
		return false
	}
	c.in = append(c.in, frame...)
	c.cond.Broadcast()
	return true
}

// admit records a request frame in flight, or returns why it is refused.
func (c *Conn) admit(h Header, size int) error {
	c.flightMu.Lock()
	defer c.flightMu.Unlock()
	return c.flight.admit(h, size)
}

// answered forgets the request a response frame answers.
func (c *Conn) answered(frame []byte) {
	h, err := ParseHeader(frame)
	if err != nil || h.Type != typeResponse {
		return
	}
	c.flightMu.Lock()
	defer c.flightMu.Unlock()
	c.flight.done(h.StreamID)
}

// endInput ends the session: Read drains what is buffered, then returns EOF.
func (c *Conn) endInput() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inputDone = true
	c.cond.Broadcast()
}

// Read implements net.Conn.
func (c *Conn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.in) == 0 && !c.inputDone && !c.closed {
		c.cond.Wait()
	}
	if c.closed {
		return 0, net.ErrClosed
	}
	if len(c.in) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.in)
	c.in = c.in[n:]
	if len(c.in) == 0 {
		c.in = nil // let the backing array go
	}
	return n, nil
}

// Write implements net.Conn. It returns len(p) once p is accepted: frames of a stale session
// are dropped silently (the session is about to read EOF anyway).
func (c *Conn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return 0, net.ErrClosed
	}
	c.out = append(c.out, p...)
	var frames [][]byte
	for len(c.out) >= HeaderLen {
		n := int(binary.BigEndian.Uint32(c.out[0:4]))
		if len(c.out) < HeaderLen+n {
			break
		}
		frame := make([]byte, HeaderLen+n)
		copy(frame, c.out)
		frames = append(frames, frame)
		c.out = c.out[HeaderLen+n:]
	}
	if len(c.out) == 0 {
		c.out = nil
	}
	c.mu.Unlock()

	for _, f := range frames {
		c.answered(f)
		if err := c.m.send(c, f); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// Close implements net.Conn. Closing the current session makes the next request start a new
// one.
func (c *Conn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.in = nil
	c.out = nil
	c.cond.Broadcast()
	c.mu.Unlock()
	c.m.endSession(c)
	return nil
}

// LocalAddr implements net.Conn.
func (c *Conn) LocalAddr() net.Addr { return addr{} }

// RemoteAddr implements net.Conn.
func (c *Conn) RemoteAddr() net.Addr { return addr{} }

// SetDeadline implements net.Conn. Deadlines are not supported (ttrpc's server sets none);
// the call is accepted and ignored.
func (c *Conn) SetDeadline(time.Time) error { return nil }

// SetReadDeadline implements net.Conn; see SetDeadline.
func (c *Conn) SetReadDeadline(time.Time) error { return nil }

// SetWriteDeadline implements net.Conn; see SetDeadline.
func (c *Conn) SetWriteDeadline(time.Time) error { return nil }
