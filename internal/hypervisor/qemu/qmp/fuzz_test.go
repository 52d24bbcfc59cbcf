package qmp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// FuzzClient plays a QMP server that sends arbitrary bytes, as a QEMU the guest took over
// could: greeting is what it sends on connect (greeting, events, the qmp_capabilities
// answer), reply what it sends once the client ran query-status (answers, events, junk).
// The client must never hang or panic: NewClient and the command end within their
// contexts, and once the server hangs up the reader stops, Events is closed and Close
// returns.
func FuzzClient(f *testing.F) {
	f.Add([]byte(greeting+"\r\n"+`{"return": {}, "id": 0}`+"\r\n"), []byte(`{"return": {"status": "running", "running": true}, "id": 1}`+"\r\n"))
	f.Fuzz(func(t *testing.T, greetingPart, replyPart []byte) {
		client, server := net.Pipe()
		defer server.Close()
		// The server reads the client's commands; the second one (after
		// qmp_capabilities) lets it send the reply part.
		commanded := make(chan struct{})
		readerDone := make(chan struct{})
		go func() {
			defer close(readerDone)
			dec := json.NewDecoder(bufio.NewReader(server))
			for {
				var cmd fakeCmd
				if err := dec.Decode(&cmd); err != nil {
					return
				}
				if cmd.Execute == "query-status" {
					close(commanded)
				}
			}
		}()
		writerDone := make(chan struct{})
		go func() {
			defer close(writerDone)
			defer server.Close() // the server hangs up once it said everything
			if _, err := server.Write(greetingPart); err != nil {
				return
			}
			// A greeting part that does not negotiate leaves the client waiting for
			// more: hang up soon, which tests that path too.
			select {
			case <-commanded:
			case <-readerDone: // the client hung up
				return
			case <-time.After(20 * time.Millisecond):
				return
			}
			_, _ = server.Write(replyPart)
		}()

		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		c, err := NewClient(ctx, client)
		if err != nil {
			if ctx.Err() != nil && !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("NewClient after its deadline returned %v, want the deadline", err)
			}
			<-writerDone
			<-readerDone
			return
		}
		_, _ = c.QueryStatus(ctx)
		// The reader stops: at a message it cannot decode (the server may still be
		// writing then), or when the server hangs up after its last byte.
		select {
		case <-c.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("reader did not stop after the server's last message")
		}
		for range c.Events() { // closed by the reader
		}
		if err := c.Close(); err != nil && !errors.Is(err, io.ErrClosedPipe) {
			t.Fatalf("Close = %v", err)
		}
		<-writerDone // a write still blocked fails once the client closed
		if _, err := c.QueryStatus(context.Background()); err == nil {
			t.Fatal("a command on a closed client succeeded")
		}
		<-readerDone
	})
}
