package sandbox

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/network"
	"github.com/vessel-containers/vessel/internal/network/nettest"
	"github.com/vessel-containers/vessel/internal/portforward"
	"github.com/vessel-containers/vessel/internal/testutil"
)

// TestPortForward dials loopback inside the pod network namespace on the host, as
// containerd's CRI does for PortForward, and reaches servers that listen on the guest's
// loopback: an HTTP page from busybox httpd on 127.0.0.1:8080, and an echo server on port
// 9000 that gets 4 MiB and sends them back while the client half-closes. Closing the client
// closes the guest connection; after delete the namespace has no nftables table and is as
// before.
func TestPortForward(t *testing.T) {
	g := testutil.RequiresVM(t)
	testutil.RequiresRoot(t)
	pod, peer := nettest.New(t), nettest.New(t)
	nettest.Veth(t, pod, "eth0", "10.213.21.2/24", peer, "peer0", "10.213.21.1/24")
	before := pod.Snapshot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	e, sb, deleted := netSandbox(ctx, t, g, "pfwd", pod.Path)
	if !hasForwardTable(t, pod) {
		t.Fatal("no port-forwarding table in the pod netns while the sandbox runs")
	}

	web := e.container("web", []string{"sh", "-c",
		"mkdir -p /tmp/www && echo hello-through-the-agent > /tmp/www/index.html && httpd -p 127.0.0.1:8080 -h /tmp/www && exec nc -ll -p 9000 -e cat"}, nil)
	st := web.Attach(ctx, "", IO{Stdout: io.Discard, Stderr: io.Discard})
	defer st.Close()
	if err := web.Start(ctx); err != nil {
		t.Fatalf("start servers: %v", err)
	}

	var body string
	var err error
	testutil.WaitFor(t, "the page from httpd at 127.0.0.1:8080 in the guest", func() bool {
		body, err = fetch(pod, "127.0.0.1:8080")
		return err == nil && strings.Contains(body, "hello-through-the-agent")
	})
	// The guest listens on loopback only: the pod IP does not reach it.
	if _, err := fetch(peer, "10.213.21.2:8080"); err == nil {
		t.Fatal("httpd bound to 127.0.0.1 in the guest answered on the pod IP")
	}

	var conn net.Conn
	testutil.WaitFor(t, "the echo server at 127.0.0.1:9000 in the guest", func() bool {
		if err := pod.Do(func() error {
			var err error
			conn, err = net.DialTimeout("tcp4", "127.0.0.1:9000", 2*time.Second)
			return err
		}); err != nil {
			return false
		}
		// A forward to a port nobody listens on yet is reset by the relay: probe with a byte.
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		b := []byte{'x'}
		if _, err := conn.Write(b); err == nil {
			if _, err := io.ReadFull(conn, b); err == nil && b[0] == 'x' {
				_ = conn.SetDeadline(time.Time{})
				return true
			}
		}
		_ = conn.Close()
		return false
	})
	tc := conn.(*net.TCPConn)
	payload := make([]byte, 4<<20)
	if _, err := rand.Read(payload); err != nil {
		t.Fatal(err)
	}
	_ = tc.SetDeadline(time.Now().Add(2 * time.Minute))
	werr := make(chan error, 1)
	go func() {
		_, err := tc.Write(payload)
		if err == nil {
			err = tc.CloseWrite() // cat in the guest reads EOF, and the echo ends
		}
		werr <- err
	}()
	got, err := io.ReadAll(tc)
	if err != nil {
		t.Fatalf("read the echo: %v", err)
	}
	if err := <-werr; err != nil {
		t.Fatalf("write: %v", err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("echo: got %d bytes, want the %d sent, intact", len(got), len(payload))
	}
	_ = tc.Close()

	*deleted = true
	pid := sb.VM().Pid()
	if err := sb.Delete(context.Background()); err != nil {
		t.Fatalf("delete: %v", err)
	}
	assertNoLeftovers(t, e.root, pid)
	if hasForwardTable(t, pod) {
		t.Fatal("port-forwarding table left in the pod netns after delete")
	}
	if after := pod.Snapshot(t); !slices.Equal(after, before) {
		t.Fatalf("pod netns after delete:\n%s\nwant:\n%s", strings.Join(after, "\n"), strings.Join(before, "\n"))
	}
}

// TestPortForwardCleanup: the cleanup of a sandbox whose owner died (what `delete` does
// after a crashed shim) removes the port-forwarding table too.
func TestPortForwardCleanup(t *testing.T) {
	g := testutil.RequiresVM(t)
	testutil.RequiresRoot(t)
	pod := nettest.New(t)
	root := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	sb, err := Create(ctx, Config{
		ID: "pfwdcl", Root: root,
		VM:      hypervisor.Config{Kernel: g.Kernel, Initrd: g.Initrd, VCPUs: 1, MemoryMiB: 256},
		Network: network.Config{NetNS: pod.Path, Model: network.ModelNone},
	})
	if err != nil {
		t.Fatalf("create sandbox: %v", err)
	}
	defer func() { _ = sb.Delete(context.Background()) }()
	if !hasForwardTable(t, pod) {
		t.Fatal("no port-forwarding table with the none model")
	}
	if err := Cleanup(ctx, root, "pfwdcl"); err != nil {
		t.Fatalf("cleanup: %v", err)
	}
	<-sb.VM().Done()
	if hasForwardTable(t, pod) {
		t.Fatal("port-forwarding table left after cleanup")
	}
}

func hasForwardTable(t *testing.T, pod *nettest.NetNS) bool {
	t.Helper()
	ns, err := netns.GetFromPath(pod.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	has, err := portforward.HasRules(ns)
	if err != nil {
		t.Fatal(err)
	}
	return has
}
