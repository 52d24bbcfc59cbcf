//go:build linux

package main

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// listen serves h on a loopback port until the test ends and returns the address.
func listen(t *testing.T, h func(net.Conn)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { // owner: the test; ends when the listener is closed
		defer close(done)
		acceptLoop(l, h)
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
	})
	return l.Addr().String()
}

func TestClientAgainstServers(t *testing.T) {
	const d = 100 * time.Millisecond
	if r, err := sendTo(listen(t, sink), d); err != nil || r <= 0 {
		t.Errorf("sendTo = %v, %v", r, err)
	}
	if r, err := receiveFrom(listen(t, source), d); err != nil || r <= 0 {
		t.Errorf("receiveFrom = %v, %v", r, err)
	}
	med, p99, n, err := pingPong(listen(t, echo), d)
	if err != nil || n == 0 || med <= 0 || p99 < med {
		t.Errorf("pingPong = %v, %v, %d, %v", med, p99, n, err)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(httpBody)) })}
	done := make(chan struct{})
	go func() { // owner: the test; ends when the server is closed
		defer close(done)
		_ = srv.Serve(l)
	}()
	defer func() {
		srv.Close()
		<-done
	}()
	if r, err := httpRate("http://"+l.Addr().String()+"/", d, 2); err != nil || r <= 0 {
		t.Errorf("httpRate = %v, %v", r, err)
	}
}

func TestClientFailsOnWrongServer(t *testing.T) {
	// A sink that lost the data: its count is not what was sent.
	lossy := func(c net.Conn) {
		if _, err := io.Copy(io.Discard, c); err == nil {
			_, _ = c.Write(make([]byte, 8))
		}
	}
	if _, err := sendTo(listen(t, lossy), 50*time.Millisecond); err == nil || !strings.Contains(err.Error(), "sink received 0 bytes") {
		t.Errorf("sendTo against a sink that counts 0: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	if err := waitListening(addr, 200*time.Millisecond); err == nil {
		t.Errorf("waitListening(%s) on a closed port succeeded", addr)
	}
}
