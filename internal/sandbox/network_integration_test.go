package sandbox

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/vishvananda/netlink"

	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/network"
	"github.com/vessel-containers/vessel/internal/network/nettest"
	"github.com/vessel-containers/vessel/internal/testutil"
)

// TestPodNetwork boots a sandbox attached to a pod netns the test made (veth to a peer
// netns, 10.213.9.0/24), serves HTTP from a container with busybox httpd and fetches it
// from the peer over the pod IP, checks from a second container of the pod that the
// interface, route and neighbour match the host's, that the peer answers ping, that a
// net.* sysctl of the spec is applied and that it reaches httpd on the pod's loopback;
// after delete the pod netns is as before.
func TestPodNetwork(t *testing.T) {
	g := testutil.RequiresVM(t)
	testutil.RequiresRoot(t)
	pod, peer := nettest.New(t), nettest.New(t)
	nettest.Veth(t, pod, "eth0", "10.213.9.2/24", peer, "peer0", "10.213.9.1/24")
	h := pod.Handle(t)
	eth0, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: net.ParseIP("10.213.9.1")}); err != nil {
		t.Fatal(err)
	}
	peerMAC := peer.MAC(t, "peer0")
	if err := h.NeighAdd(&netlink.Neigh{LinkIndex: eth0.Attrs().Index, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT,
		IP: net.ParseIP("10.213.9.1"), HardwareAddr: peerMAC}); err != nil {
		t.Fatal(err)
	}
	before := pod.Snapshot(t)

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	e, sb, deleted := netSandbox(ctx, t, g, "netsb", pod.Path)
	if during := strings.Join(pod.Snapshot(t), "\n"); !strings.Contains(during, "vsl_tap0 tuntap") {
		t.Fatalf("no tap in the pod netns while the sandbox runs:\n%s", during)
	}

	// The peer fetches the page over the pod IP once httpd listens.
	defer serveHTTP(ctx, t, e, peer, "10.213.9.2:8080", "hello-from-vessel")()

	probe := e.container("probe", []string{"sh", "-c",
		"ip addr show eth0; ip route; ip neigh; ping -c 1 -W 10 10.213.9.1 && echo PING-OK; cat /proc/sys/net/ipv4/ping_group_range; wget -q -O - http://127.0.0.1:8080/"},
		func(s *specs.Spec) {
			s.Linux.Sysctl = map[string]string{"net.ipv4.ping_group_range": "0 2147483647"}
		})
	code, out, errOut := e.run(probe, nil)
	if code != 0 {
		t.Fatalf("probe exited %d: %s\n%s", code, out, errOut)
	}
	mac := pod.MAC(t, "eth0").String()
	for _, want := range []string{
		"inet 10.213.9.2/24", "link/ether " + mac, "mtu 1500",
		"default via 10.213.9.1 dev eth0",
		"10.213.9.1 dev eth0 lladdr " + peerMAC.String(),
		"PING-OK", "0\t2147483647",
		// The pod's other container serves on the pod's loopback.
		"hello-from-vessel",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("probe output lacks %q:\n%s", want, out)
		}
	}

	*deleted = true
	pid := sb.VM().Pid()
	if err := sb.Delete(context.Background()); err != nil {
		t.Fatalf("delete: %v", err)
	}
	assertNoLeftovers(t, e.root, pid)
	if after := pod.Snapshot(t); !slices.Equal(after, before) {
		t.Fatalf("pod netns after delete:\n%s\nwant:\n%s", strings.Join(after, "\n"), strings.Join(before, "\n"))
	}
}

// fetch gets / from addr with a connection made inside ns.
func fetch(ns *nettest.NetNS, addr string) (string, error) {
	var conn net.Conn
	err := ns.Do(func() error {
		var err error
		conn, err = net.DialTimeout("tcp", addr, 2*time.Second)
		return err
	})
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(conn, "GET / HTTP/1.0\r\nHost: %s\r\n\r\n", addr); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %s", resp.Status)
	}
	return string(b), nil
}

// TestPodNetworkMissingNetNS refuses a netns path that does not exist, naming it, and
// leaves no VM and no state.
func TestPodNetworkMissingNetNS(t *testing.T) {
	g := testutil.RequiresVM(t)
	root, err := os.MkdirTemp("", "vsn")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(root)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err = Create(ctx, Config{
		ID: "netsb", Root: root,
		VM:      hypervisor.Config{Kernel: g.Kernel, Initrd: g.Initrd, VCPUs: 1, MemoryMiB: 256},
		Network: network.Config{NetNS: "/run/netns/vessel-test-no-such-netns"},
	})
	if err == nil || !strings.Contains(err.Error(), "/run/netns/vessel-test-no-such-netns") || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("got %v, want an error naming the missing netns", err)
	}
	assertNoLeftovers(t, root, 0)
}

// TestPodNetworkHotplug follows a pod netns that is empty when the sandbox boots, as with
// managers that run CNI from a createRuntime hook: the test adds a veth (10.213.10.0/24)
// between a container's create and its start, as the hook would, and the start hot-plugs
// it: busybox httpd in the container answers the peer over the pod IP and a second
// container sees the address and route and pings the peer. A second veth
// (10.213.11.0/24) added while the pod runs is picked up by the next container create,
// with both peers reachable; once the test removes it, the next container delete unplugs
// it and the guest no longer has it. After delete the pod netns holds exactly the veth the
// "manager" left there.
func TestPodNetworkHotplug(t *testing.T) {
	g := testutil.RequiresVM(t)
	testutil.RequiresRoot(t)
	pod, peer, peer2 := nettest.New(t), nettest.New(t), nettest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	e, sb, deleted := netSandbox(ctx, t, g, "hotsb", pod.Path)

	httpd := e.container("web", []string{"sh", "-c", "mkdir -p /tmp/www && echo hello-hotplug > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www"}, nil)
	// What a createRuntime hook of a CNI-running manager does, between create and start.
	nettest.Veth(t, pod, "eth0", "10.213.10.2/24", peer, "peer0", "10.213.10.1/24")
	h := pod.Handle(t)
	eth0, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: net.ParseIP("10.213.10.1")}); err != nil {
		t.Fatal(err)
	}
	managed := pod.Snapshot(t)

	st := httpd.Attach(ctx, "", IO{Stdout: io.Discard, Stderr: io.Discard})
	defer st.Close()
	start := time.Now()
	if err := httpd.Start(ctx); err != nil {
		t.Fatalf("start httpd: %v", err)
	}
	t.Logf("start with one nic hot-plugged and configured: %v", time.Since(start))
	if during := strings.Join(pod.Snapshot(t), "\n"); !strings.Contains(during, "vsl_tap0 tuntap") {
		t.Fatalf("no tap in the pod netns after the start:\n%s", during)
	}
	var body string
	testutil.WaitFor(t, "the page from httpd at 10.213.10.2:8080", func() bool {
		body, err = fetch(peer, "10.213.10.2:8080")
		return err == nil
	})
	if !strings.Contains(body, "hello-hotplug") {
		t.Fatalf("page: got %q", body)
	}

	probe := func(id, script string, want, unwanted []string) {
		t.Helper()
		c := e.container(id, []string{"sh", "-c", script}, nil)
		code, out, errOut := e.run(c, nil)
		if code != 0 {
			t.Fatalf("%s exited %d: %s\n%s", id, code, out, errOut)
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("%s output lacks %q:\n%s", id, w, out)
			}
		}
		for _, u := range unwanted {
			if strings.Contains(out, u) {
				t.Errorf("%s output has %q:\n%s", id, u, out)
			}
		}
	}
	probe("probe1", "ip addr show eth0; ip route; ping -c 1 -W 10 10.213.10.1 && echo PING-OK",
		[]string{"inet 10.213.10.2/24", "link/ether " + pod.MAC(t, "eth0").String(), "default via 10.213.10.1 dev eth0", "PING-OK"}, nil)
	if err := sb.DeleteContainer(ctx, "probe1"); err != nil {
		t.Fatal(err)
	}

	// A second interface while the pod runs: the next container create attaches it.
	nettest.Veth(t, pod, "eth1", "10.213.11.2/24", peer2, "peer1", "10.213.11.1/24")
	probe("probe2", "ip addr show eth1; ip route; ping -c 1 -W 10 10.213.11.1 && echo PING2-OK; ping -c 1 -W 10 10.213.10.1 && echo PING1-OK",
		[]string{"inet 10.213.11.2/24", "link/ether " + pod.MAC(t, "eth1").String(), "default via 10.213.10.1 dev eth0", "PING2-OK", "PING1-OK"}, nil)
	if during := strings.Join(pod.Snapshot(t), "\n"); !strings.Contains(during, "vsl_tap1 tuntap") {
		t.Fatalf("no second tap in the pod netns:\n%s", during)
	}

	// The manager removes it; the next container delete unplugs it.
	eth1, err := h.LinkByName("eth1")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkDel(eth1); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if err := sb.DeleteContainer(ctx, "probe2"); err != nil {
		t.Fatal(err)
	}
	t.Logf("delete of a container with one nic unplugged and its tap removed: %v", time.Since(start))
	if during := strings.Join(pod.Snapshot(t), "\n"); strings.Contains(during, "vsl_tap1") {
		t.Fatalf("the second tap is left after its interface went:\n%s", during)
	}
	probe("probe3", "ip -o link; ping -c 1 -W 10 10.213.10.1 && echo PING1-OK", []string{"eth0", "PING1-OK"}, []string{"eth1"})

	*deleted = true
	pid := sb.VM().Pid()
	if err := sb.Delete(context.Background()); err != nil {
		t.Fatalf("delete: %v", err)
	}
	assertNoLeftovers(t, e.root, pid)
	if after := pod.Snapshot(t); !slices.Equal(after, managed) {
		t.Fatalf("pod netns after delete:\n%s\nwant:\n%s", strings.Join(after, "\n"), strings.Join(managed, "\n"))
	}
}

// TestPodNetworkHotplugCleanup cleans up, from the state on disk alone (as `shim delete`
// after a crashed shim does), a sandbox whose NIC was hot-plugged: the VM is killed and the
// pod netns holds exactly the veth the "manager" put there.
func TestPodNetworkHotplugCleanup(t *testing.T) {
	g := testutil.RequiresVM(t)
	testutil.RequiresRoot(t)
	pod, peer := nettest.New(t), nettest.New(t)
	root, err := os.MkdirTemp("", "vsn")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(root)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	sb, err := Create(ctx, Config{
		ID: "hotcl", Root: root,
		VM:      hypervisor.Config{Kernel: g.Kernel, Initrd: g.Initrd, VCPUs: 1, MemoryMiB: 256},
		Network: network.Config{NetNS: pod.Path, Model: network.ModelTCFilter},
	})
	if err != nil {
		t.Fatalf("create sandbox: %v", err)
	}
	defer func() { _ = sb.Delete(context.Background()) }()
	e := &env{t: t, sb: sb, root: root}
	c := e.container("sleeper", []string{"sleep", "1000"}, nil)
	nettest.Veth(t, pod, "eth0", "10.213.13.2/24", peer, "peer0", "10.213.13.1/24")
	managed := pod.Snapshot(t)
	if err := c.Start(ctx); err != nil {
		t.Fatalf("start: %v", err)
	}
	if during := strings.Join(pod.Snapshot(t), "\n"); !strings.Contains(during, "vsl_tap0 tuntap") {
		t.Fatalf("no tap after the start:\n%s", during)
	}
	pid := sb.VM().Pid()
	if err := Cleanup(ctx, root, "hotcl"); err != nil {
		t.Fatalf("cleanup: %v", err)
	}
	<-sb.VM().Done()
	assertNoLeftovers(t, e.root, pid)
	if after := pod.Snapshot(t); !slices.Equal(after, managed) {
		t.Fatalf("pod netns after cleanup:\n%s\nwant:\n%s", strings.Join(after, "\n"), strings.Join(managed, "\n"))
	}
}

// netSandbox creates sandbox id in a state root of its own, attached to the network
// namespace at netns; the test's cleanup removes it unless the test sets *deleted after
// deleting it itself.
func netSandbox(ctx context.Context, t *testing.T, g testutil.Guest, id, netns string) (*env, *Sandbox, *bool) {
	t.Helper()
	return netSandboxWith(ctx, t, g, id, 1, network.Config{NetNS: netns, Model: network.ModelTCFilter, VhostNet: true})
}

// netSandboxWith is netSandbox with vcpus vCPUs and the network configuration nc.
func netSandboxWith(ctx context.Context, t *testing.T, g testutil.Guest, id string, vcpus uint32, nc network.Config) (*env, *Sandbox, *bool) {
	t.Helper()
	root, err := os.MkdirTemp("", "vsn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	sb, err := Create(ctx, Config{
		ID: id, Root: root,
		VM:      hypervisor.Config{Kernel: g.Kernel, Initrd: g.Initrd, VCPUs: vcpus, MemoryMiB: 256},
		Network: nc,
	})
	if err != nil {
		t.Fatalf("create sandbox: %v", err)
	}
	deleted := new(bool)
	t.Cleanup(func() {
		if !*deleted {
			_ = sb.Delete(context.Background())
		}
	})
	return &env{t: t, sb: sb, root: root}, sb, deleted
}

// serveHTTP starts container "web" of e serving page with busybox httpd on port 8080 and
// waits until peer fetches it from addr (the pod IP and port). The returned stop closes
// the container's stdio.
func serveHTTP(ctx context.Context, t *testing.T, e *env, peer *nettest.NetNS, addr, page string) (stop func()) {
	t.Helper()
	httpd := e.container("web", []string{"sh", "-c", "mkdir -p /tmp/www && echo " + page + " > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www"}, nil)
	st := httpd.Attach(ctx, "", IO{Stdout: io.Discard, Stderr: io.Discard})
	if err := httpd.Start(ctx); err != nil {
		st.Close()
		t.Fatalf("start httpd: %v", err)
	}
	var body string
	var err error
	testutil.WaitFor(t, "the page from httpd at "+addr, func() bool {
		body, err = fetch(peer, addr)
		return err == nil
	})
	if !strings.Contains(body, page) {
		st.Close()
		t.Fatalf("page: got %q, want %q", body, page)
	}
	return func() { st.Close() }
}

// deleteAndCompare deletes sb (marking it deleted for the cleanup), checks that it left
// nothing and that pod's namespace is as want.
func deleteAndCompare(t *testing.T, e *env, sb *Sandbox, deleted *bool, pod *nettest.NetNS, want []string) {
	t.Helper()
	*deleted = true
	pid := sb.VM().Pid()
	if err := sb.Delete(context.Background()); err != nil {
		t.Fatalf("delete: %v", err)
	}
	assertNoLeftovers(t, e.root, pid)
	if after := pod.Snapshot(t); !slices.Equal(after, want) {
		t.Fatalf("pod netns after delete:\n%s\nwant:\n%s", strings.Join(after, "\n"), strings.Join(want, "\n"))
	}
}
