package agent

import (
	"context"
	"io"
	"os"
	"sync"
)

// streamLimit bounds what a stream buffers: when the host does not read, the copier stops
// reading and the process blocks on a full pipe instead of the agent growing.
const streamLimit = 1 << 20

// defaultReadLen is what a read returns at most when the request says 0.
const defaultReadLen = 64 << 10

// stream buffers one output stream of a process (stdout, stderr or a terminal) between the
// copier that reads the pipe and the host's long-polling reads.
type stream struct {
	// mu guards buf, eof, closed and changed.
	mu  sync.Mutex
	buf []byte
	// eof: the writer side finished (the pipe reached EOF).
	eof bool
	// closed: the stream was shut down; reads return eof once buf is drained and writes fail.
	closed bool
	// changed is closed and replaced whenever buf, eof or closed change.
	changed chan struct{}
	// eofRead is set once a read returned eof.
	eofRead bool
}

func newStream() *stream { return &stream{changed: make(chan struct{})} }

// Preconditions: s.mu is held.
func (s *stream) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Write appends p, blocking while the buffer is full. It fails once the stream is closed.
func (s *stream) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		s.mu.Lock()
		if s.closed || s.eof {
			s.mu.Unlock()
			return written, os.ErrClosed
		}
		room := streamLimit - len(s.buf)
		if room <= 0 {
			ch := s.changed
			s.mu.Unlock()
			<-ch
			continue
		}
		n := min(room, len(p))
		s.buf = append(s.buf, p[:n]...)
		s.notify()
		s.mu.Unlock()
		p = p[n:]
		written += n
	}
	return written, nil
}

// finish marks the writer side done: reads return eof after the buffer is drained.
func (s *stream) finish() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.eof {
		s.eof = true
		s.notify()
	}
}

// close shuts the stream down: a blocked Write returns, reads drain then report eof.
func (s *stream) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		s.eof = true
		s.notify()
	}
}

// Read long-polls: it blocks until data is buffered, the stream ended, or ctx is done, and
// returns at most limit bytes (defaultReadLen when limit is 0). eof is true only when the stream
// ended and everything was read; a response with eof carries no data. On ctx expiry nothing
// is consumed.
func (s *stream) Read(ctx context.Context, limit int) (data []byte, eof bool, err error) {
	if limit <= 0 {
		limit = defaultReadLen
	}
	for {
		s.mu.Lock()
		if len(s.buf) > 0 {
			n := min(limit, len(s.buf))
			data = make([]byte, n)
			copy(data, s.buf)
			s.buf = s.buf[n:]
			if len(s.buf) == 0 {
				s.buf = nil
			}
			s.notify()
			s.mu.Unlock()
			return data, false, nil
		}
		if s.eof {
			s.eofRead = true
			s.mu.Unlock()
			return nil, true, nil
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
	}
}

// drained reports whether a read already returned eof.
func (s *stream) drained() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.eofRead
}

// copyFrom copies r into the stream until r ends, then marks the stream finished. It is the
// body of a copier goroutine: it stops at EOF of r, when r is closed, or when the stream is
// closed. A terminal master reports EIO once the last slave fd is gone: that ends it too.
func (s *stream) copyFrom(r io.Reader) {
	defer s.finish()
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := s.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			// EOF, EIO from a terminal, or the file was closed: the stream ends either way
			// and the exit status tells the rest.
			return
		}
	}
}
