package agent

import (
	"context"
	"io"
	"os"
	"sync"
	"time"
)

// streamLimit bounds what a stream buffers: when the host does not read, the copier stops
// reading and the process blocks on a full pipe instead of the agent growing.
const streamLimit = 1 << 20

// defaultReadLen is what a read returns at most when the request says 0.
const defaultReadLen = 64 << 10

// The copier reads into buffers it hands to the stream without copying: the first holds
// minCopyBuf bytes, each next one twice the last (output that keeps coming gets larger
// reads and larger responses) up to maxCopyBuf. A buffer is replaced once less than
// minCopyRead bytes are left in it.
const (
	minCopyBuf  = 32 << 10
	maxCopyBuf  = 1 << 20
	minCopyRead = 4 << 10
)

// Output that keeps coming is gathered into fewer, larger responses: a read that finds
// less than coalesceMin bytes (and less than it asked for) on a stream whose previous
// read returned data less than busyWindow ago waits up to coalesceWait for more. A pipe
// read returns at most 64 KiB and a terminal's at most 4 KiB, so without this every
// response would carry one such read, and under TCG a response costs the guest more than
// the bytes it carries. The first output after a quiet spell is returned at once.
const (
	coalesceMin  = 256 << 10
	busyWindow   = 50 * time.Millisecond
	coalesceWait = 4 * time.Millisecond
)

// stream buffers one output stream of a process (stdout, stderr or a terminal) between the
// copier that reads the pipe and the host's long-polling reads.
type stream struct {
	// mu guards chunks, size, eof, closed, changed and lastTake.
	mu sync.Mutex
	// chunks hold the buffered bytes in order; size is their total length. Neighbouring
	// bytes the copier read into one buffer stay in one chunk, so a read takes them
	// without copying.
	chunks [][]byte
	size   int
	// eof: the writer side finished (the pipe reached EOF).
	eof bool
	// closed: the stream was shut down; reads return eof once the chunks are drained and
	// writes fail.
	closed bool
	// changed is closed and replaced whenever chunks, eof or closed change.
	changed chan struct{}
	// eofRead is set once a read returned eof.
	eofRead bool
	// lastTake is when a read last returned data.
	lastTake time.Time
}

func newStream() *stream { return &stream{changed: make(chan struct{})} }

// Preconditions: s.mu is held.
func (s *stream) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// waitRoom blocks until the stream buffers less than streamLimit and returns the room
// left. It fails once the stream is closed or finished.
func (s *stream) waitRoom() (int, error) {
	for {
		s.mu.Lock()
		if s.closed || s.eof {
			s.mu.Unlock()
			return 0, os.ErrClosed
		}
		if room := streamLimit - s.size; room > 0 {
			s.mu.Unlock()
			return room, nil
		}
		ch := s.changed
		s.mu.Unlock()
		<-ch
	}
}

// put appends p, which the stream owns from now on. When p continues the last chunk in
// the same backing array (the last chunk's capacity reaches into p), the chunk grows
// instead. It fails once the stream is closed.
func (s *stream) put(p []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.eof {
		return os.ErrClosed
	}
	if n := len(s.chunks); n > 0 && adjacent(s.chunks[n-1], p) {
		s.chunks[n-1] = s.chunks[n-1][:len(s.chunks[n-1])+len(p)]
	} else {
		s.chunks = append(s.chunks, p)
	}
	s.size += len(p)
	s.notify()
	return nil
}

// adjacent reports whether b starts right where a ends, in a's backing array.
func adjacent(a, b []byte) bool {
	if len(a) == 0 || len(b) == 0 || cap(a) == len(a) {
		return false
	}
	return &a[:len(a)+1][len(a)] == &b[0]
}

// Write copies p into the stream, blocking while the buffer is full. It fails once the
// stream is closed.
func (s *stream) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		room, err := s.waitRoom()
		if err != nil {
			return written, err
		}
		n := min(room, len(p))
		if err := s.put(append([]byte(nil), p[:n]...)); err != nil {
			return written, err
		}
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
// is consumed. On a busy stream it may wait up to coalesceWait for more output before it
// returns what there is. The bytes returned belong to the caller: the stream never writes
// them again.
func (s *stream) Read(ctx context.Context, limit int) (data []byte, eof bool, err error) {
	if limit <= 0 {
		limit = defaultReadLen
	}
	// wait bounds this read's wait for more output (see coalesceMin); expired is set when
	// it ran out.
	var wait *time.Timer
	expired := false
	for {
		s.mu.Lock()
		if s.size > 0 {
			gather := !expired && !s.eof && s.size < min(limit, coalesceMin) &&
				(wait != nil || time.Since(s.lastTake) < busyWindow)
			if !gather {
				data = s.take(limit)
				s.lastTake = time.Now()
				s.notify()
				s.mu.Unlock()
				return data, false, nil
			}
			if wait == nil {
				wait = time.NewTimer(coalesceWait)
				defer wait.Stop()
			}
			ch := s.changed
			s.mu.Unlock()
			select {
			case <-ch:
			case <-wait.C:
				expired = true
			case <-ctx.Done():
				return nil, false, ctx.Err()
			}
			continue
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

// take removes up to limit buffered bytes. The first chunk is returned as it is when it
// is all that fits or all there is; bytes of several chunks are copied into one slice.
//
// Preconditions: s.mu is held; s.size > 0.
func (s *stream) take(limit int) []byte {
	first := s.chunks[0]
	if len(first) >= limit || len(s.chunks) == 1 {
		n := min(limit, len(first))
		data := first[:n:n]
		s.consume(n)
		return data
	}
	data := make([]byte, 0, min(limit, s.size))
	for len(data) < cap(data) {
		c := s.chunks[0]
		n := min(len(c), cap(data)-len(data))
		data = append(data, c[:n]...)
		s.consume(n)
	}
	return data
}

// consume drops the first n bytes of the first chunk.
//
// Preconditions: s.mu is held; n <= len(s.chunks[0]).
func (s *stream) consume(n int) {
	s.size -= n
	if n < len(s.chunks[0]) {
		s.chunks[0] = s.chunks[0][n:]
		return
	}
	s.chunks[0] = nil
	s.chunks = s.chunks[1:]
	if len(s.chunks) == 0 {
		s.chunks = nil // let the backing array go
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
// It reads straight into buffers the stream then owns (see minCopyBuf), never more than
// the room left below streamLimit.
func (s *stream) copyFrom(r io.Reader) {
	defer s.finish()
	size := minCopyBuf
	buf := make([]byte, size)
	off := 0
	for {
		room, err := s.waitRoom()
		if err != nil {
			return
		}
		if len(buf)-off < minCopyRead {
			size = min(2*size, maxCopyBuf)
			buf = make([]byte, size)
			off = 0
		}
		end := off + min(room, len(buf)-off)
		n, err := r.Read(buf[off:end])
		if n > 0 {
			// Uncapped: the chunk's capacity reaching into the rest of buf lets put merge
			// the next read into it. Nothing writes through a chunk.
			if perr := s.put(buf[off : off+n]); perr != nil {
				return
			}
			off += n
		}
		if err != nil {
			// EOF, EIO from a terminal, or the file was closed: the stream ends either way
			// and the exit status tells the rest.
			return
		}
	}
}
