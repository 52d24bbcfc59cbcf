package qmp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fakeConn is the server end of one QMP connection in a test.
type fakeConn struct {
	t    *testing.T
	conn net.Conn
	dec  *json.Decoder
	// mu serializes writes to conn.
	mu sync.Mutex
}

type fakeCmd struct {
	Execute   string          `json:"execute"`
	Arguments json.RawMessage `json:"arguments"`
	ID        json.RawMessage `json:"id"`
}

func (f *fakeConn) send(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := io.WriteString(f.conn, s+"\r\n"); err != nil {
		f.t.Errorf("fake server write: %v", err)
	}
}

func (f *fakeConn) read() (fakeCmd, bool) {
	var c fakeCmd
	if err := f.dec.Decode(&c); err != nil {
		return c, false
	}
	return c, true
}

const greeting = `{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian"}, "capabilities": ["oob"]}}`

// negotiate plays the server side of the greeting and qmp_capabilities.
func (f *fakeConn) negotiate() bool {
	f.send(greeting)
	c, ok := f.read()
	if !ok {
		return false
	}
	if c.Execute != "qmp_capabilities" {
		f.t.Errorf("first command: got %q, want qmp_capabilities", c.Execute)
		return false
	}
	f.send(`{"return": {}, "id": ` + string(c.ID) + `}`)
	return true
}

// serve starts a fake QMP server on a unix socket running handler for one connection.
// It returns the socket path; the server goroutine is stopped and waited for at cleanup.
func serve(t *testing.T, handler func(f *fakeConn)) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "qmp.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var conn net.Conn
	var mu sync.Mutex
	go func() {
		defer close(done)
		c, err := l.Accept()
		if err != nil {
			return
		}
		mu.Lock()
		conn = c
		mu.Unlock()
		handler(&fakeConn{t: t, conn: c, dec: json.NewDecoder(bufio.NewReader(c))})
		_ = c.Close()
	}()
	t.Cleanup(func() {
		_ = l.Close()
		mu.Lock()
		if conn != nil {
			_ = conn.Close()
		}
		mu.Unlock()
		<-done
	})
	return path
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func dial(t *testing.T, path string) *Client {
	t.Helper()
	c, err := Dial(testCtx(t), path)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestNegotiation(t *testing.T) {
	path := serve(t, func(f *fakeConn) {
		if !f.negotiate() {
			return
		}
		f.read() // wait for the client to close
	})
	c := dial(t, path)
	g := c.Greeting()
	if got, want := g.Version.QEMU, (Version{7, 2, 22}); got != want {
		t.Errorf("version: got %+v, want %+v", got, want)
	}
	if got := strings.Join(g.Capabilities, ","); got != "oob" {
		t.Errorf("capabilities: got %q, want oob", got)
	}
}

func TestNegotiationErrors(t *testing.T) {
	tests := []struct {
		name    string
		handler func(f *fakeConn)
		want    string
	}{
		{
			name:    "not a greeting",
			handler: func(f *fakeConn) { f.send(`{"return": {}}`) },
			want:    "not a QMP greeting",
		},
		{
			name: "capabilities refused",
			handler: func(f *fakeConn) {
				f.send(greeting)
				c, _ := f.read()
				f.send(`{"error": {"class": "GenericError", "desc": "no"}, "id": ` + string(c.ID) + `}`)
			},
			want: "GenericError: no",
		},
		{
			name:    "server closes",
			handler: func(f *fakeConn) {},
			want:    "read greeting",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := serve(t, tt.handler)
			_, err := Dial(testCtx(t), path)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Dial error: got %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestNegotiationTimeout(t *testing.T) {
	release := make(chan struct{})
	path := serve(t, func(f *fakeConn) { <-release }) // never greets
	defer close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := Dial(ctx, path)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dial error: got %v, want context.DeadlineExceeded", err)
	}
}

func TestCommandsMatchedByID(t *testing.T) {
	path := serve(t, func(f *fakeConn) {
		if !f.negotiate() {
			return
		}
		// Read both commands, answer in reverse order.
		a, _ := f.read()
		b, _ := f.read()
		for _, c := range []fakeCmd{b, a} {
			var args struct{ Name string }
			_ = json.Unmarshal(c.Arguments, &args)
			f.send(`{"return": {"echo": "` + c.Execute + `-` + args.Name + `"}, "id": ` + string(c.ID) + `}`)
		}
		f.read()
	})
	c := dial(t, path)
	ctx := testCtx(t)

	var wg sync.WaitGroup
	got := make([]string, 2)
	errs := make([]error, 2)
	for i, name := range []string{"one", "two"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var r struct{ Echo string }
			errs[i] = c.Execute(ctx, "cmd", map[string]string{"name": name}, &r)
			got[i] = r.Echo
		}()
	}
	wg.Wait()
	for i, want := range []string{"cmd-one", "cmd-two"} {
		if errs[i] != nil || got[i] != want {
			t.Errorf("call %d: got %q, %v; want %q", i, got[i], errs[i], want)
		}
	}
}

func TestTypedCommands(t *testing.T) {
	// seenMu guards seen.
	var seenMu sync.Mutex
	var seen []string
	path := serve(t, func(f *fakeConn) {
		if !f.negotiate() {
			return
		}
		for {
			c, ok := f.read()
			if !ok {
				return
			}
			seenMu.Lock()
			seen = append(seen, c.Execute)
			seenMu.Unlock()
			switch c.Execute {
			case "query-status":
				f.send(`{"return": {"status": "paused", "singlestep": false, "running": false}, "id": ` + string(c.ID) + `}`)
			case "quit":
				return // close without answering, as QEMU may
			default:
				f.send(`{"return": {}, "id": ` + string(c.ID) + `}`)
			}
		}
	})
	c := dial(t, path)
	ctx := testCtx(t)
	if err := c.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := c.Cont(ctx); err != nil {
		t.Fatalf("Cont: %v", err)
	}
	st, err := c.QueryStatus(ctx)
	if err != nil || st.Status != "paused" || st.Running {
		t.Fatalf("QueryStatus: got %+v, %v; want paused", st, err)
	}
	if err := c.Quit(ctx); err != nil {
		t.Fatalf("Quit with the server closing: got %v, want nil", err)
	}
	<-c.Done()
	seenMu.Lock()
	defer seenMu.Unlock()
	if got, want := strings.Join(seen, ","), "stop,cont,query-status,quit"; got != want {
		t.Errorf("commands: got %s, want %s", got, want)
	}
}

func TestErrorResponse(t *testing.T) {
	path := serve(t, func(f *fakeConn) {
		if !f.negotiate() {
			return
		}
		c, _ := f.read()
		f.send(`{"id": ` + string(c.ID) + `, "error": {"class": "CommandNotFound", "desc": "The command nope has not been found"}}`)
		f.read()
	})
	c := dial(t, path)
	err := c.Execute(testCtx(t), "nope", nil, nil)
	var qe *Error
	if !errors.As(err, &qe) {
		t.Fatalf("got %v, want a *qmp.Error", err)
	}
	if qe.Class != "CommandNotFound" || !strings.Contains(err.Error(), "nope") {
		t.Errorf("got class %q, message %q", qe.Class, err)
	}
}

func TestEvents(t *testing.T) {
	path := serve(t, func(f *fakeConn) {
		f.send(greeting)
		c, _ := f.read()
		// An event before the capabilities response must not be lost.
		f.send(`{"timestamp": {"seconds": 100, "microseconds": 5}, "event": "STOP"}`)
		f.send(`{"return": {}, "id": ` + string(c.ID) + `}`)
		f.send(`{"timestamp": {"seconds": 101, "microseconds": 0}, "event": "RESUME"}`)
		f.send(`{"timestamp": {"seconds": 102, "microseconds": 0}, "event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-shutdown"}}`)
		// Then the server goes away.
	})
	c := dial(t, path)
	var got []string
	for ev := range c.Events() { // closed when the server closes
		got = append(got, ev.Name)
		if ev.Name == "STOP" && !ev.Time.Equal(time.Unix(100, 5000)) {
			t.Errorf("STOP time: got %v", ev.Time)
		}
		if ev.Name == "SHUTDOWN" {
			var d struct{ Reason string }
			if err := json.Unmarshal(ev.Data, &d); err != nil || d.Reason != "guest-shutdown" {
				t.Errorf("SHUTDOWN data: got %s", ev.Data)
			}
		}
	}
	if want := "STOP,RESUME,SHUTDOWN"; strings.Join(got, ",") != want {
		t.Errorf("events: got %v, want %s", got, want)
	}
}

func TestServerCloses(t *testing.T) {
	path := serve(t, func(f *fakeConn) {
		if !f.negotiate() {
			return
		}
		f.read() // take the command, never answer, close
	})
	c := dial(t, path)
	err := c.Execute(testCtx(t), "query-status", nil, nil)
	if !IsDisconnect(err) {
		t.Fatalf("pending call when the server closes: got %v, want a disconnect error", err)
	}
	select {
	case <-c.Done():
	case <-testCtx(t).Done():
		t.Fatal("reader did not stop after the server closed")
	}
	if !errors.Is(c.Err(), io.EOF) {
		t.Errorf("Err: got %v, want EOF", c.Err())
	}
	if _, ok := <-c.Events(); ok {
		t.Error("events channel still open")
	}
	if err := c.Execute(testCtx(t), "query-status", nil, nil); !errors.Is(err, io.EOF) {
		t.Errorf("call after close: got %v, want EOF", err)
	}
}

func TestCloseStopsReader(t *testing.T) {
	path := serve(t, func(f *fakeConn) {
		if !f.negotiate() {
			return
		}
		f.read()
	})
	c, err := Dial(testCtx(t), path)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case <-c.Done():
	default:
		t.Fatal("Close returned before the reader stopped")
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := c.Execute(testCtx(t), "cont", nil, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("call after Close: got %v, want ErrClosed", err)
	}
	if err := c.Quit(testCtx(t)); !errors.Is(err, ErrClosed) {
		t.Errorf("Quit after Close: got %v, want ErrClosed", err)
	}
}

func TestExecuteContextCanceled(t *testing.T) {
	path := serve(t, func(f *fakeConn) {
		if !f.negotiate() {
			return
		}
		c, _ := f.read() // answer late, after the caller gave up
		d, _ := f.read()
		f.send(`{"return": {"late": true}, "id": ` + string(c.ID) + `}`)
		f.send(`{"return": {"late": false}, "id": ` + string(d.ID) + `}`)
		f.read()
	})
	c := dial(t, path)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := c.Execute(ctx, "slow", nil, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want DeadlineExceeded", err)
	}
	// The late answer to the abandoned call must not reach the next caller.
	var r struct{ Late bool }
	if err := c.Execute(testCtx(t), "next", nil, &r); err != nil || r.Late {
		t.Fatalf("next call: got %+v, %v; want its own answer", r, err)
	}
}

// TestOversizedMessage: a QEMU the guest took over sends an event without end. The client
// stops reading at maxMessage instead of buffering it all, fails the pending command and
// reports the limit; a message just under it still gets through.
func TestOversizedMessage(t *testing.T) {
	big := strings.Repeat("x", maxMessage)
	path := serve(t, func(f *fakeConn) {
		if !f.negotiate() {
			return
		}
		c, ok := f.read()
		if !ok {
			return
		}
		// Just under the limit: a large but acceptable event.
		f.send(`{"event": "BIG", "data": {"s": "` + big[:maxMessage-100] + `"}}`)
		f.send(`{"return": {"status": "running", "running": true}, "id": ` + string(c.ID) + `}`)
		if _, ok := f.read(); !ok {
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		// Over it: the client hangs up while this is being written.
		_, _ = io.WriteString(f.conn, `{"event": "HUGE", "data": {"s": "`+big+big+`"}}`)
	})
	c := dial(t, path)
	ctx := testCtx(t)
	if st, err := c.QueryStatus(ctx); err != nil || !st.Running {
		t.Fatalf("query-status after a large event = %+v, %v", st, err)
	}
	if ev := <-c.Events(); ev.Name != "BIG" {
		t.Fatalf("event = %q, want BIG", ev.Name)
	}
	_, err := c.QueryStatus(ctx)
	if err == nil || !strings.Contains(err.Error(), "over 1048576 bytes") {
		t.Fatalf("query-status during an oversized message = %v, want the message limit", err)
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("reader did not stop")
	}
}

// TestGetFD checks that getfd carries the file's descriptor with the command, as QEMU's
// monitor expects it: the server receives a descriptor of the same file.
func TestGetFD(t *testing.T) {
	file, err := os.CreateTemp(t.TempDir(), "state")
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	var want unix.Stat_t
	if err := unix.Fstat(int(file.Fd()), &want); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	path := serve(t, func(f *fakeConn) {
		if !f.negotiate() {
			return
		}
		buf, oob := make([]byte, 4096), make([]byte, unix.CmsgSpace(4))
		n, oobn, _, _, err := f.conn.(*net.UnixConn).ReadMsgUnix(buf, oob)
		if err != nil {
			got <- err.Error()
			return
		}
		var c fakeCmd
		if err := json.Unmarshal(buf[:n], &c); err != nil {
			got <- fmt.Sprintf("decode %q: %v", buf[:n], err)
			return
		}
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil || len(msgs) != 1 {
			got <- fmt.Sprintf("control messages %v, %v", msgs, err)
			return
		}
		fds, err := unix.ParseUnixRights(&msgs[0])
		if err != nil || len(fds) != 1 {
			got <- fmt.Sprintf("rights %v, %v", fds, err)
			return
		}
		defer unix.Close(fds[0])
		var st unix.Stat_t
		if err := unix.Fstat(fds[0], &st); err != nil {
			got <- err.Error()
			return
		}
		same := st.Dev == want.Dev && st.Ino == want.Ino
		got <- fmt.Sprintf("%s %s same=%v", c.Execute, c.Arguments, same)
		f.send(`{"return": {}, "id": ` + string(c.ID) + `}`)
	})
	c := dial(t, path)
	if err := c.GetFD(testCtx(t), "migration", file); err != nil {
		t.Fatalf("GetFD: %v (server: %s)", err, <-got)
	}
	if g, w := <-got, `getfd {"fdname":"migration"} same=true`; g != w {
		t.Errorf("server received: got %s, want %s", g, w)
	}
}
