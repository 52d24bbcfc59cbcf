//go:build linux

package portforward

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/vishvananda/netns"

	"github.com/vessel-containers/vessel/internal/network/nettest"
	"github.com/vessel-containers/vessel/internal/testutil"
)

// fakeGuest stands in for the agent: it connects to the port in the test's own network
// namespace (where the test's server listens), and buffers nothing.
type fakeGuest struct {
	mu     sync.Mutex
	conns  map[string]*net.TCPConn
	opened []string
	closed []string
	// noV4 refuses IPv4 opens, as a guest whose server listens on ::1 only.
	noV4 bool
}

func newFakeGuest() *fakeGuest { return &fakeGuest{conns: make(map[string]*net.TCPConn)} }

func (g *fakeGuest) conn(id string) (*net.TCPConn, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	c, ok := g.conns[id]
	if !ok {
		return nil, fmt.Errorf("forward %s: %w", id, errdefs.ErrNotFound)
	}
	return c, nil
}

func (g *fakeGuest) PortForwardOpen(ctx context.Context, id string, port uint16, ipv6 bool) error {
	host := "127.0.0.1"
	if ipv6 {
		host = "::1"
	} else if g.noV4 {
		return fmt.Errorf("%w: refused", errdefs.ErrFailedPrecondition)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(int(port))))
	if errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("%w: %w", errdefs.ErrFailedPrecondition, err)
	}
	if err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.conns[id] = c.(*net.TCPConn)
	g.opened = append(g.opened, id)
	return nil
}

func (g *fakeGuest) PortForwardWrite(_ context.Context, id string, data []byte) error {
	c, err := g.conn(id)
	if err != nil {
		return err
	}
	_, err = c.Write(data)
	return err
}

func (g *fakeGuest) PortForwardRead(ctx context.Context, id string, n uint32) ([]byte, bool, error) {
	c, err := g.conn(id)
	if err != nil {
		return nil, false, err
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	buf := make([]byte, n)
	k, err := c.Read(buf)
	if errors.Is(err, io.EOF) {
		return buf[:k], k == 0, nil
	}
	if err != nil {
		return nil, false, err
	}
	return buf[:k], false, nil
}

func (g *fakeGuest) PortForwardCloseWrite(_ context.Context, id string) error {
	c, err := g.conn(id)
	if err != nil {
		return err
	}
	return c.CloseWrite()
}

func (g *fakeGuest) PortForwardClose(_ context.Context, id string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if c, ok := g.conns[id]; ok {
		_ = c.Close()
		delete(g.conns, id)
		g.closed = append(g.closed, id)
	}
	return nil
}

func (g *fakeGuest) open() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.conns)
}

// startForwarder starts a forwarder in a new namespace and checks, when the test ends,
// that Close removed the table and the record.
func startForwarder(t *testing.T, g Guest) (*nettest.NetNS, *Forwarder) {
	t.Helper()
	testutil.RequiresRoot(t)
	pod := nettest.New(t)
	dir := t.TempDir()
	f, err := Start(context.Background(), dir, pod.Path, g)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		if hasTable(t, pod) {
			t.Errorf("table inet %s is left after Close", TableName)
		}
	})
	if !hasTable(t, pod) {
		t.Fatalf("no table inet %s after Start", TableName)
	}
	return pod, f
}

func hasTable(t *testing.T, pod *nettest.NetNS) bool {
	t.Helper()
	ns, err := netns.GetFromPath(pod.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	has, err := HasRules(ns)
	if err != nil {
		t.Fatal(err)
	}
	return has
}

// dialIn dials addr from inside pod, as containerd's CRI does.
func dialIn(t *testing.T, pod *nettest.NetNS, network, addr string) *net.TCPConn {
	t.Helper()
	var c net.Conn
	err := pod.Do(func() error {
		var err error
		c, err = net.Dial(network, addr)
		return err
	})
	if err != nil {
		t.Fatalf("dial %s in the pod namespace: %v", addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c.(*net.TCPConn)
}

// server listens in the test's namespace and runs serve for each connection.
func server(t *testing.T, network, addr string, serve func(net.Conn)) int {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Skipf("listen %s: %v", addr, err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				serve(c)
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// echo answers with a greeting, then echoes everything back until EOF, then closes.
func echo(c net.Conn) {
	if _, err := c.Write([]byte("hello\n")); err != nil {
		return
	}
	_, _ = io.Copy(c, c)
}

func TestRelayBothWaysHalfClose(t *testing.T) {
	g := newFakeGuest()
	pod, _ := startForwarder(t, g)
	port := server(t, "tcp4", "127.0.0.1:0", echo)
	c := dialIn(t, pod, "tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	greeting := make([]byte, 6)
	if _, err := io.ReadFull(c, greeting); err != nil || string(greeting) != "hello\n" {
		t.Fatalf("greeting %q: %v", greeting, err)
	}
	// 8 MiB there and back, written while it is read: both directions at once.
	payload := make([]byte, 8<<20)
	if _, err := rand.Read(payload); err != nil {
		t.Fatal(err)
	}
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(payload)
		if err == nil {
			err = c.CloseWrite() // half-close: the server sees EOF and still answers
		}
		werr <- err
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read back: %v", err)
	}
	if err := <-werr; err != nil {
		t.Fatalf("write: %v", err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("got %d bytes back, want the %d sent, intact", len(got), len(payload))
	}
	_ = c.Close()
	testutil.WaitFor(t, "the guest connection is closed", func() bool { return g.open() == 0 })
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.opened) != 1 || len(g.closed) != 1 {
		t.Fatalf("opened %v, closed %v: want one each", g.opened, g.closed)
	}
}

func TestRelayIPv6(t *testing.T) {
	g := newFakeGuest()
	pod, f := startForwarder(t, g)
	if f.Ports().V6 == 0 {
		t.Skip("no IPv6 loopback in the namespace")
	}
	port := server(t, "tcp6", "[::1]:0", echo)
	c := dialIn(t, pod, "tcp6", net.JoinHostPort("::1", strconv.Itoa(port)))
	greeting := make([]byte, 6)
	if _, err := io.ReadFull(c, greeting); err != nil || string(greeting) != "hello\n" {
		t.Fatalf("greeting %q: %v", greeting, err)
	}
}

// TestFallbackToIPv6 checks that an IPv4 dial reaches a guest server that listens on ::1
// only, as CRI's own fallback would.
func TestFallbackToIPv6(t *testing.T) {
	g := newFakeGuest()
	g.noV4 = true
	pod, _ := startForwarder(t, g)
	port := server(t, "tcp6", "[::1]:0", echo)
	c := dialIn(t, pod, "tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	greeting := make([]byte, 6)
	if _, err := io.ReadFull(c, greeting); err != nil || string(greeting) != "hello\n" {
		t.Fatalf("greeting %q: %v", greeting, err)
	}
}

// TestRefusedInGuest: a port nobody listens on in the guest resets the client's connection.
func TestRefusedInGuest(t *testing.T) {
	g := newFakeGuest()
	pod, _ := startForwarder(t, g)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close() // a port nothing listens on
	// The reset may come before the dial has returned, or after.
	var c net.Conn
	err = pod.Do(func() error {
		var err error
		c, err = net.Dial("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		return err
	})
	if err == nil {
		defer c.Close()
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatal("read from a forward to a closed port succeeded")
		}
	} else if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("dial a forward to a closed port: %v, want a reset", err)
	}
	if g.open() != 0 {
		t.Fatal("a guest connection is open")
	}
}

// TestCloseEndsRelays: Close ends a relay in progress and closes its guest connection.
func TestCloseEndsRelays(t *testing.T) {
	g := newFakeGuest()
	testutil.RequiresRoot(t)
	pod := nettest.New(t)
	dir := t.TempDir()
	f, err := Start(context.Background(), dir, pod.Path, g)
	if err != nil {
		t.Fatal(err)
	}
	port := server(t, "tcp4", "127.0.0.1:0", echo)
	c := dialIn(t, pod, "tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if _, err := io.ReadFull(c, make([]byte, 6)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if g.open() != 0 {
		t.Fatal("a guest connection is open after Close")
	}
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("the client's connection is still open after Close")
	}
	if hasTable(t, pod) {
		t.Fatal("table left after Close")
	}
	// With the table gone, loopback in the namespace is plain loopback again.
	if err := pod.Do(func() error {
		_, err := net.Dial("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		return err
	}); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial after Close: %v, want connection refused", err)
	}
}

// TestTeardownAfterCrash removes the table from the record alone, as a crashed shim's
// cleanup does, and is a no-op the second time.
func TestTeardownAfterCrash(t *testing.T) {
	testutil.RequiresRoot(t)
	pod := nettest.New(t)
	dir := t.TempDir()
	f, err := Start(context.Background(), dir, pod.Path, newFakeGuest())
	if err != nil {
		t.Fatal(err)
	}
	// The shim died: its listeners are gone, the table and record stay.
	for _, ln := range f.lns {
		_ = ln.Close()
	}
	f.cancel()
	f.wg.Wait()
	if !hasTable(t, pod) {
		t.Fatal("no table")
	}
	for range 2 {
		if err := Teardown(dir); err != nil {
			t.Fatal(err)
		}
	}
	if hasTable(t, pod) {
		t.Fatal("table left after Teardown")
	}
}
