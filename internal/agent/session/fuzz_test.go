package session

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// fuzzPort serves a fixed byte stream as the port: its bytes, then one EOF (a host detach),
// then errPortGone, which ends Run. Writes are recorded whole.
type fuzzPort struct {
	r   *bytes.Reader
	eof bool

	// mu guards writes.
	mu     sync.Mutex
	writes [][]byte
}

var errPortGone = errors.New("fuzz port: end of input")

func (p *fuzzPort) Read(b []byte) (int, error) {
	if p.r.Len() > 0 {
		return p.r.Read(b)
	}
	if !p.eof {
		p.eof = true
		return 0, io.EOF
	}
	return 0, errPortGone
}

func (p *fuzzPort) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.writes = append(p.writes, append([]byte(nil), b...))
	return len(b), nil
}

// splitFrames parses b as whole frames and returns how many; ok is false when b does not end
// on a frame boundary or a frame is over MaxPayload.
func splitFrames(b []byte) (n int, ok bool) {
	for len(b) > 0 {
		h, err := ParseHeader(b)
		if err != nil || h.Length > MaxPayload || len(b) < HeaderLen+int(h.Length) {
			return n, false
		}
		b = b[HeaderLen+int(h.Length):]
		n++
	}
	return n, true
}

// FuzzMux feeds an arbitrary byte stream to the session layer's frame parser, as whatever
// holds the host end of the port could send it. Each session it starts echoes what it reads
// back through Write (so frames are also reassembled on the way out). The mux must end when
// the port does, hand sessions only whole frames of at most MaxPayload, count them, and
// write only whole frames to the port.
func FuzzMux(f *testing.F) {
	f.Add(frame(1, typeRequest, "hello"))
	f.Add(append(frame(1, typeRequest, "a"), frame(3, typeRequest, "b")...))
	f.Add(append(frame(3, typeRequest, "a"), frame(1, typeRequest, "new session")...))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 1, 0})
	f.Fuzz(func(t *testing.T, stream []byte) {
		port := &fuzzPort{r: bytes.NewReader(stream)}
		m := NewMux(port, WithRetryInterval(time.Microsecond))
		var wg sync.WaitGroup
		var mu sync.Mutex
		var delivered [][]byte
		accepted := make(chan struct{})
		go func() {
			defer close(accepted)
			for {
				c, err := m.Accept()
				if err != nil {
					return
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					got, _ := io.ReadAll(echoConn{c})
					mu.Lock()
					delivered = append(delivered, got)
					mu.Unlock()
					_ = c.Close()
				}()
			}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := m.Run(ctx)
		if !errors.Is(err, errPortGone) {
			t.Fatalf("Run = %v, want the port's end", err)
		}
		_ = m.Close()
		<-accepted
		wg.Wait()

		frames := 0
		for _, d := range delivered {
			n, ok := splitFrames(d)
			if !ok {
				t.Fatalf("a session read bytes that are not whole frames: %q", d)
			}
			frames += n
		}
		if st := m.Stats(); uint64(frames) != st.FramesIn {
			t.Fatalf("sessions read %d frames, stats say %d in", frames, st.FramesIn)
		}
		port.mu.Lock()
		defer port.mu.Unlock()
		for _, w := range port.writes {
			if n, ok := splitFrames(w); !ok || n != 1 {
				t.Fatalf("a port write is not one whole frame: %q", w)
			}
		}
	})
}

// echoConn reads a session and writes what it read back to it, in the pieces it read.
type echoConn struct{ c net.Conn }

func (e echoConn) Read(b []byte) (int, error) {
	n, err := e.c.Read(b)
	if n > 0 {
		_, _ = e.c.Write(b[:n])
	}
	return n, err
}
