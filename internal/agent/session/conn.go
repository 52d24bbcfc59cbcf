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

	// mu guards in, inputDone, closed, hdr, out and outFill.
	mu   sync.Mutex
	cond *sync.Cond
	// in holds routed bytes not yet read.
	in []byte
	// inputDone is set when the mux ended the session: Read returns EOF once in is empty.
	inputDone bool
	// closed is set by Close.
	closed bool
	// hdr holds the start of a frame header whose remaining bytes were not written yet.
	hdr []byte
	// out is the frame being assembled, allocated at its full size once its header is
	// complete; outFill bytes of it are written. Nil between frames.
	out     []byte
	outFill int

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
	// Each byte is copied once, into the frame it belongs to.
	var frames [][]byte
	for rest := p; len(rest) > 0; {
		if c.out == nil {
			k := min(HeaderLen-len(c.hdr), len(rest))
			c.hdr = append(c.hdr, rest[:k]...)
			rest = rest[k:]
			if len(c.hdr) < HeaderLen {
				break
			}
			c.out = getFrame(HeaderLen + int(binary.BigEndian.Uint32(c.hdr[0:4])))
			c.outFill = copy(c.out, c.hdr)
			c.hdr = c.hdr[:0]
		}
		k := copy(c.out[c.outFill:], rest)
		c.outFill += k
		rest = rest[k:]
		if c.outFill == len(c.out) {
			frames = append(frames, c.out)
			c.out, c.outFill = nil, 0
		}
	}
	c.mu.Unlock()

	for i, f := range frames {
		c.answered(f)
		err := c.m.send(c, f)
		putFrame(f)
		if err != nil {
			for _, rest := range frames[i+1:] {
				putFrame(rest)
			}
			return 0, err
		}
	}
	return len(p), nil
}

// Large frames (output responses) are recycled once written: under TCG the guest's
// garbage collector costs more than the bytes it frees. A pooled buffer holds a frame of
// up to maxPooledFrame bytes; smaller and larger frames are allocated as they come.
const (
	minPooledFrame = 64 << 10
	maxPooledFrame = 1<<20 + 4<<10 // a 1 MiB output response with its header and fields
)

var framePool = sync.Pool{New: func() any {
	b := make([]byte, maxPooledFrame)
	return &b
}}

// getFrame returns a buffer of n bytes for a frame.
func getFrame(n int) []byte {
	if n < minPooledFrame || n > maxPooledFrame {
		return make([]byte, n)
	}
	return (*framePool.Get().(*[]byte))[:n]
}

// putFrame recycles a frame that getFrame took from the pool; nothing may use it after.
func putFrame(f []byte) {
	if cap(f) != maxPooledFrame {
		return
	}
	f = f[:maxPooledFrame]
	framePool.Put(&f)
}

// Close implements net.Conn. Closing the current session makes the next request start a new
// one.
func (c *Conn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.in = nil
	c.hdr, c.out, c.outFill = nil, nil, 0
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
