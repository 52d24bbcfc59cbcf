package agent

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"testing"
	"time"
)

func TestStreamLongPoll(t *testing.T) {
	s := newStream()
	got := make(chan []byte, 1)
	go func() {
		data, eof, err := s.Read(context.Background(), 0)
		if err != nil || eof {
			got <- []byte("unexpected: " + errString(err))
			return
		}
		got <- data
	}()
	select {
	case b := <-got:
		t.Fatalf("read returned %q before any data", b)
	case <-time.After(20 * time.Millisecond):
	}
	if _, err := s.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-got:
		if string(b) != "hello" {
			t.Fatalf("read %q", b)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("long poll did not return after a write")
	}
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

func TestStreamLimitsAndEOFAfterDrain(t *testing.T) {
	ctx := context.Background()
	s := newStream()
	payload := []byte{0, 1, 2, 0xff, '\n', 0, 'x'} // binary-safe
	if _, err := s.Write(payload); err != nil {
		t.Fatal(err)
	}
	s.finish()
	var all []byte
	for i := 0; ; i++ {
		data, eof, err := s.Read(ctx, 3)
		if err != nil {
			t.Fatal(err)
		}
		if eof {
			if len(data) != 0 {
				t.Fatalf("eof response carries data %q", data)
			}
			break
		}
		if len(data) > 3 {
			t.Fatalf("read %d bytes, asked for at most 3", len(data))
		}
		all = append(all, data...)
		if i > 10 {
			t.Fatal("no eof")
		}
	}
	if !bytes.Equal(all, payload) {
		t.Fatalf("read %v, want %v", all, payload)
	}
	if !s.drained() {
		t.Fatal("drained() = false after eof was read")
	}
	// eof again at once.
	if _, eof, _ := s.Read(ctx, 0); !eof {
		t.Fatal("second read after eof is not eof")
	}
}

func TestStreamCancelledReadConsumesNothing(t *testing.T) {
	s := newStream()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, _, err := s.Read(ctx, 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	if _, err := s.Write([]byte("kept")); err != nil {
		t.Fatal(err)
	}
	data, _, err := s.Read(context.Background(), 0)
	if err != nil || string(data) != "kept" {
		t.Fatalf("read %q, %v", data, err)
	}
}

func TestStreamFullBufferBlocksWriterUntilRead(t *testing.T) {
	s := newStream()
	big := bytes.Repeat([]byte("z"), streamLimit+10)
	done := make(chan error, 1)
	go func() {
		_, err := s.Write(big)
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("write past the limit returned early: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	data, _, err := s.Read(context.Background(), 64<<10)
	if err != nil || len(data) != 64<<10 {
		t.Fatalf("read %d, %v", len(data), err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("writer still blocked after a read made room")
	}
}

func TestStreamCloseUnblocksWriter(t *testing.T) {
	s := newStream()
	done := make(chan error, 1)
	go func() {
		_, err := s.Write(bytes.Repeat([]byte("z"), streamLimit+1))
		done <- err
	}()
	time.Sleep(10 * time.Millisecond)
	s.close()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrClosed) {
			t.Fatalf("err = %v, want closed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("close did not unblock the writer")
	}
}

func TestStreamCopyFromPipe(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	s := newStream()
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.copyFrom(r)
	}()
	if _, err := w.Write([]byte("out")); err != nil {
		t.Fatal(err)
	}
	w.Close()
	<-done // the copier stops at EOF
	data, eof, _ := s.Read(context.Background(), 0)
	if string(data) != "out" || eof {
		t.Fatalf("read %q eof=%v", data, eof)
	}
	if _, eof, _ := s.Read(context.Background(), 0); !eof {
		t.Fatal("no eof after the pipe closed and the buffer drained")
	}

	// Closing the read end stops a copier blocked in Read.
	r2, w2, _ := os.Pipe()
	defer w2.Close()
	s2 := newStream()
	done2 := make(chan struct{})
	go func() {
		defer close(done2)
		s2.copyFrom(r2)
	}()
	time.Sleep(10 * time.Millisecond)
	r2.Close()
	select {
	case <-done2:
	case <-time.After(5 * time.Second):
		t.Fatal("copier did not stop when its pipe was closed")
	}
}

// pieces is a reader that returns its data a few bytes per Read.
type pieces struct {
	data []byte
	n    int
}

func (p *pieces) Read(b []byte) (int, error) {
	if len(p.data) == 0 {
		return 0, io.EOF
	}
	n := copy(b[:min(len(b), p.n)], p.data)
	p.data = p.data[n:]
	return n, nil
}

// TestStreamCopierMergesReads: bytes the copier read one small piece at a time come back
// in one read, whole and in order, and later reads do not change what an earlier read
// returned.
func TestStreamCopierMergesReads(t *testing.T) {
	payload := make([]byte, 3*minCopyBuf+123)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	s := newStream()
	s.copyFrom(&pieces{data: payload, n: 1000})
	ctx := context.Background()
	first, eof, err := s.Read(ctx, 64<<10)
	if err != nil || eof {
		t.Fatalf("first read: eof %v err %v", eof, err)
	}
	if len(first) < 2000 {
		t.Errorf("first read returned %d bytes, want the copier's reads of one buffer merged", len(first))
	}
	saved := append([]byte(nil), first...)
	all := append([]byte(nil), first...)
	for {
		data, eof, err := s.Read(ctx, 5000)
		if err != nil {
			t.Fatal(err)
		}
		if eof {
			break
		}
		all = append(all, data...)
	}
	if !bytes.Equal(all, payload) {
		t.Fatalf("read %d bytes that differ from the %d written", len(all), len(payload))
	}
	if !bytes.Equal(first, saved) {
		t.Fatal("a later read changed the bytes an earlier read returned")
	}
}

// TestStreamCopierBlocksAtLimit: a copier whose stream is not read stops at streamLimit.
func TestStreamCopierBlocksAtLimit(t *testing.T) {
	s := newStream()
	r, w := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.copyFrom(r)
	}()
	wrote := make(chan int64, 1)
	go func() {
		n, _ := io.Copy(w, bytes.NewReader(make([]byte, 4*streamLimit)))
		wrote <- n
	}()
	// Wait until the copier filled the stream, then check it took no more.
	for {
		s.mu.Lock()
		size := s.size
		ch := s.changed
		s.mu.Unlock()
		if size > streamLimit {
			t.Fatalf("stream buffers %d bytes, limit %d", size, streamLimit)
		}
		if size == streamLimit {
			break
		}
		<-ch
	}
	select {
	case n := <-wrote:
		t.Fatalf("writer finished (%d bytes) although the stream is full and unread", n)
	default:
	}
	s.close()
	r.Close()
	<-done
	<-wrote
}

// TestStreamGatherKeepsData: a read on a busy stream that finds little output waits for
// more, but gives up on ctx without consuming anything, and otherwise returns what there is.
func TestStreamGatherKeepsData(t *testing.T) {
	s := newStream()
	if _, err := s.Write([]byte("first")); err != nil {
		t.Fatal(err)
	}
	if data, _, err := s.Read(context.Background(), 0); err != nil || string(data) != "first" {
		t.Fatalf("first read = %q, %v", data, err)
	}
	if _, err := s.Write([]byte("second")); err != nil {
		t.Fatal(err)
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if data, eof, err := s.Read(cancelled, 0); !errors.Is(err, context.Canceled) || eof || data != nil {
		t.Fatalf("read with a cancelled context = %q, %v, %v; want nothing and context.Canceled", data, eof, err)
	}
	if data, _, err := s.Read(context.Background(), 0); err != nil || string(data) != "second" {
		t.Fatalf("read on a busy stream = %q, %v; want \"second\"", data, err)
	}
	s.finish()
	if _, eof, err := s.Read(context.Background(), 0); err != nil || !eof {
		t.Fatalf("read after finish: eof %v, %v", eof, err)
	}
}
