package network

import (
	"context"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vessel-containers/vessel/internal/network/nettest"
	"github.com/vessel-containers/vessel/internal/testutil"
)

// TestAttachTeardown attaches a pod netns with a veth, checks the tap, qdiscs and filters,
// the guest description and the NIC, then tears down from the state file alone and checks
// that the netns is as before.
func TestAttachTeardown(t *testing.T) {
	testutil.RequiresRoot(t)
	pod, peer := nettest.New(t), nettest.New(t)
	nettest.Veth(t, pod, "eth0", "10.213.1.2/24", peer, "peer0", "10.213.1.1/24")
	h := pod.Handle(t)
	eth0, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetMTU(eth0, 1400); err != nil {
		t.Fatal(err)
	}
	gw, _ := netlink.ParseAddr("10.213.1.1/32")
	if err := h.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: gw.IP}); err != nil {
		t.Fatal(err)
	}
	before := pod.Snapshot(t)

	dir := t.TempDir()
	att, err := Attach(context.Background(), dir, Config{NetNS: pod.Path, VhostNet: true})
	if err != nil {
		t.Fatal(err)
	}
	defer att.CloseFiles()
	if len(att.NICs) != 1 || att.NICs[0].Tap == nil || att.NICs[0].MAC != pod.MAC(t, "eth0").String() {
		t.Fatalf("nics: got %+v", att.NICs)
	}
	if len(att.Interfaces) != 1 || att.Interfaces[0].Name != "eth0" || att.Interfaces[0].Mtu != 1400 ||
		len(att.Interfaces[0].Addresses) != 1 || att.Interfaces[0].Addresses[0].Address != "10.213.1.2" {
		t.Fatalf("interfaces: got %v", att.Interfaces)
	}
	if len(att.Routes) != 1 || att.Routes[0].Gateway != "10.213.1.1" || att.Routes[0].Dest != "default" {
		t.Fatalf("routes: got %v", att.Routes)
	}
	during := strings.Join(pod.Snapshot(t), "\n")
	for _, want := range []string{
		"link vsl_tap0 tuntap", "mtu=1400", "qdisc vsl_tap0 ingress", "qdisc eth0 ingress",
		"filter vsl_tap0 u32", "filter eth0 u32",
	} {
		if !strings.Contains(during, want) {
			t.Errorf("attached netns lacks %q:\n%s", want, during)
		}
	}

	att.CloseFiles()
	if err := Teardown(context.Background(), dir); err != nil {
		t.Fatal(err)
	}
	if after := pod.Snapshot(t); !slices.Equal(after, before) {
		t.Fatalf("after teardown:\n%s\nwant:\n%s", strings.Join(after, "\n"), strings.Join(before, "\n"))
	}
	if _, err := LoadState(dir); !errdefs.IsNotFound(err) {
		t.Fatalf("state after teardown: %v", err)
	}
	if err := Teardown(context.Background(), dir); err != nil {
		t.Fatalf("second teardown: %v", err)
	}
}

// TestAttachRefusesUnknownType refuses a link type it cannot attach, naming it, and leaves
// the netns as it was.
func TestAttachRefusesUnknownType(t *testing.T) {
	testutil.RequiresRoot(t)
	pod, peer := nettest.New(t), nettest.New(t)
	nettest.Veth(t, pod, "eth0", "10.213.2.2/24", peer, "peer0", "10.213.2.1/24")
	h := pod.Handle(t)
	if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br7"}}); err != nil {
		t.Fatal(err)
	}
	before := pod.Snapshot(t)
	dir := t.TempDir()
	_, err := Attach(context.Background(), dir, Config{NetNS: pod.Path})
	if err == nil || !strings.Contains(err.Error(), "br7") || !strings.Contains(err.Error(), `"bridge"`) {
		t.Fatalf("got %v, want an error naming br7 and its type", err)
	}
	if after := pod.Snapshot(t); !slices.Equal(after, before) {
		t.Fatalf("after refusal:\n%s\nwant:\n%s", strings.Join(after, "\n"), strings.Join(before, "\n"))
	}
	if _, err := LoadState(dir); !errdefs.IsNotFound(err) {
		t.Fatalf("state left: %v", err)
	}
}

// TestAttachMissingNetNS names the path that does not exist.
func TestAttachMissingNetNS(t *testing.T) {
	dir := t.TempDir()
	_, err := Attach(context.Background(), dir, Config{NetNS: "/run/netns/vessel-no-such-netns"})
	if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "/run/netns/vessel-no-such-netns") {
		t.Fatalf("got %v", err)
	}
	if _, err := LoadState(dir); !errdefs.IsNotFound(err) {
		t.Fatalf("state left: %v", err)
	}
}

// TestAttachNone attaches nothing with the none model or without a netns.
func TestAttachNone(t *testing.T) {
	for _, cfg := range []Config{{}, {NetNS: "/run/netns/whatever", Model: ModelNone}} {
		att, err := Attach(context.Background(), t.TempDir(), cfg)
		if err != nil || len(att.NICs) != 0 {
			t.Fatalf("%+v: got %+v, %v", cfg, att, err)
		}
	}
}

// TestTeardownAfterCrash tears down from the state file of an attach whose process never
// closed its descriptors or called Teardown (as after a shim crash).
func TestTeardownAfterCrash(t *testing.T) {
	testutil.RequiresRoot(t)
	pod, peer := nettest.New(t), nettest.New(t)
	nettest.Veth(t, pod, "eth0", "10.213.3.2/24", peer, "peer0", "10.213.3.1/24")
	before := pod.Snapshot(t)
	dir := t.TempDir()
	att, err := Attach(context.Background(), dir, Config{NetNS: pod.Path})
	if err != nil {
		t.Fatal(err)
	}
	// The tap descriptor stays open, as in a VMM that still runs.
	defer att.CloseFiles()
	if err := Teardown(context.Background(), dir); err != nil {
		t.Fatal(err)
	}
	if after := pod.Snapshot(t); !slices.Equal(after, before) {
		t.Fatalf("after teardown:\n%s\nwant:\n%s", strings.Join(after, "\n"), strings.Join(before, "\n"))
	}
}

// TestRescan attaches an empty pod netns, then follows a veth the "manager" adds (a new
// tap, NIC and guest description; a second rescan adds nothing), refuses a link type it
// cannot attach without touching anything, reports the veth once it is gone, and Detach
// leaves the netns as it was at first.
func TestRescan(t *testing.T) {
	testutil.RequiresRoot(t)
	pod, peer := nettest.New(t), nettest.New(t)
	before := pod.Snapshot(t)
	dir := t.TempDir()
	ctx := context.Background()
	att, err := Attach(ctx, dir, Config{NetNS: pod.Path})
	if err != nil {
		t.Fatal(err)
	}
	if len(att.NICs) != 0 {
		t.Fatalf("empty netns: got nics %+v", att.NICs)
	}

	nettest.Veth(t, pod, "eth0", "10.213.4.2/24", peer, "peer0", "10.213.4.1/24")
	h := pod.Handle(t)
	eth0, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: net.ParseIP("10.213.4.1")}); err != nil {
		t.Fatal(err)
	}
	att, err = Rescan(ctx, dir, Config{NetNS: pod.Path})
	if err != nil {
		t.Fatal(err)
	}
	defer att.CloseFiles()
	if len(att.NICs) != 1 || att.NICs[0].ID != "vsl-net0" || att.NICs[0].MAC != pod.MAC(t, "eth0").String() || len(att.Gone) != 0 {
		t.Fatalf("rescan: got nics %+v, gone %+v", att.NICs, att.Gone)
	}
	if len(att.Interfaces) != 1 || att.Interfaces[0].Name != "eth0" || len(att.Routes) != 1 || att.Routes[0].Gateway != "10.213.4.1" {
		t.Fatalf("rescan: got interfaces %v, routes %v", att.Interfaces, att.Routes)
	}
	att.CloseFiles()
	during := pod.Snapshot(t)
	if !slices.Contains(during, "link vsl_tap0 tuntap "+pod.MAC(t, "vsl_tap0").String()+" mtu=1500") {
		t.Fatalf("no tap after the rescan:\n%s", strings.Join(during, "\n"))
	}
	again, err := Rescan(ctx, dir, Config{NetNS: pod.Path})
	if err != nil || len(again.NICs) != 0 || len(again.Gone) != 0 || len(again.Interfaces) != 0 {
		t.Fatalf("second rescan: got %+v, %v; want nothing new", again, err)
	}

	// A bridge cannot be attached: the rescan fails naming it and changes nothing.
	if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br7"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := Rescan(ctx, dir, Config{NetNS: pod.Path}); err == nil || !strings.Contains(err.Error(), "br7") {
		t.Fatalf("rescan with a bridge: got %v, want an error naming br7", err)
	}
	br, err := h.LinkByName("br7")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkDel(br); err != nil {
		t.Fatal(err)
	}
	if got := pod.Snapshot(t); !slices.Equal(got, during) {
		t.Fatalf("after a refused rescan:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(during, "\n"))
	}

	if err := h.LinkDel(eth0); err != nil {
		t.Fatal(err)
	}
	gone, err := Rescan(ctx, dir, Config{NetNS: pod.Path})
	if err != nil {
		t.Fatal(err)
	}
	if len(gone.Gone) != 1 || gone.Gone[0].Link != "eth0" || gone.Gone[0].NIC != "vsl-net0" || len(gone.NICs) != 0 {
		t.Fatalf("rescan after the veth left: got %+v", gone)
	}
	if err := Detach(ctx, dir, gone.Gone[0]); err != nil {
		t.Fatal(err)
	}
	if after := pod.Snapshot(t); !slices.Equal(after, before) {
		t.Fatalf("after detach:\n%s\nwant:\n%s", strings.Join(after, "\n"), strings.Join(before, "\n"))
	}
	st, err := LoadState(dir)
	if err != nil || len(st.Endpoints) != 0 {
		t.Fatalf("state after detach: %+v, %v", st, err)
	}
	if err := Teardown(ctx, dir); err != nil {
		t.Fatal(err)
	}
}

// TestTeardownAfterRescan tears down, from the state file alone, an interface a rescan
// attached while its tap descriptor is still open (a VMM that still runs after its shim
// died): the netns holds exactly what the manager put there.
func TestTeardownAfterRescan(t *testing.T) {
	testutil.RequiresRoot(t)
	pod, peer := nettest.New(t), nettest.New(t)
	dir := t.TempDir()
	ctx := context.Background()
	if _, err := Attach(ctx, dir, Config{NetNS: pod.Path}); err != nil {
		t.Fatal(err)
	}
	nettest.Veth(t, pod, "eth0", "10.213.5.2/24", peer, "peer0", "10.213.5.1/24")
	managed := pod.Snapshot(t)
	att, err := Rescan(ctx, dir, Config{NetNS: pod.Path})
	if err != nil {
		t.Fatal(err)
	}
	defer att.CloseFiles()
	if len(att.NICs) != 1 {
		t.Fatalf("rescan: got nics %+v", att.NICs)
	}
	if err := Teardown(ctx, dir); err != nil {
		t.Fatal(err)
	}
	if after := pod.Snapshot(t); !slices.Equal(after, managed) {
		t.Fatalf("after teardown:\n%s\nwant:\n%s", strings.Join(after, "\n"), strings.Join(managed, "\n"))
	}
}

// TestAttachMultiqueue attaches a veth with two queue pairs: the tap is multiqueue, the NIC
// has a descriptor per queue, and teardown leaves the namespace as it was.
func TestAttachMultiqueue(t *testing.T) {
	testutil.RequiresRoot(t)
	pod, peer := nettest.New(t), nettest.New(t)
	nettest.Veth(t, pod, "eth0", "10.213.1.2/24", peer, "peer0", "10.213.1.1/24")
	before := pod.Snapshot(t)
	dir := t.TempDir()
	att, err := Attach(context.Background(), dir, Config{NetNS: pod.Path, VhostNet: true, Queues: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer att.CloseFiles()
	if len(att.NICs) != 1 || att.NICs[0].Tap == nil || len(att.NICs[0].MoreQueues) != 1 || att.NICs[0].MoreQueues[0].Tap == nil {
		t.Fatalf("nics: got %+v, want one with two queues", att.NICs)
	}
	if (att.NICs[0].Vhost == nil) != (att.NICs[0].MoreQueues[0].Vhost == nil) {
		t.Errorf("vhost-net for one queue but not the other: %+v", att.NICs[0])
	}
	h := pod.Handle(t)
	l, err := h.LinkByName("vsl_tap0")
	if err != nil {
		t.Fatal(err)
	}
	if tap, ok := l.(*netlink.Tuntap); !ok || tap.Flags&netlink.TUNTAP_MULTI_QUEUE == 0 {
		t.Errorf("tap %+v is not multiqueue", l)
	}
	att.CloseFiles()
	if err := Teardown(context.Background(), dir); err != nil {
		t.Fatal(err)
	}
	if after := pod.Snapshot(t); !slices.Equal(after, before) {
		t.Errorf("after teardown:\n%s\nbefore:\n%s", strings.Join(after, "\n"), strings.Join(before, "\n"))
	}
}

// TestAttachMacvtap attaches a veth with the macvtap model and two queues: a macvtap in
// bridge mode on the veth has the veth's MAC and MTU, the veth a random MAC and NOARP,
// the NIC a descriptor per queue with the pod MAC; a bridge is refused; teardown gives the
// veth back as it was and removes the macvtap.
func TestAttachMacvtap(t *testing.T) {
	testutil.RequiresRoot(t)
	pod, peer := nettest.New(t), nettest.New(t)
	nettest.Veth(t, pod, "eth0", "10.213.1.2/24", peer, "peer0", "10.213.1.1/24")
	mac := pod.MAC(t, "eth0").String()
	before := pod.Snapshot(t)
	dir := t.TempDir()
	att, err := Attach(context.Background(), dir, Config{NetNS: pod.Path, Model: ModelMacvtap, Queues: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer att.CloseFiles()
	if len(att.NICs) != 1 || att.NICs[0].Tap == nil || len(att.NICs[0].MoreQueues) != 1 || att.NICs[0].MAC != mac {
		t.Fatalf("nics: got %+v, want one with two queues and mac %s", att.NICs, mac)
	}
	if len(att.Interfaces) != 1 || att.Interfaces[0].HwAddr != mac || len(att.Interfaces[0].Addresses) != 1 {
		t.Errorf("guest interface: got %v", att.Interfaces)
	}
	h := pod.Handle(t)
	mvt, err := h.LinkByName("vsl_tap0")
	if err != nil {
		t.Fatal(err)
	}
	eth0, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if m, ok := mvt.(*netlink.Macvtap); !ok || m.Mode != netlink.MACVLAN_MODE_BRIDGE || m.Attrs().ParentIndex != eth0.Attrs().Index {
		t.Errorf("vsl_tap0: got %+v, want a bridge-mode macvtap on eth0", mvt)
	}
	if got := mvt.Attrs().HardwareAddr.String(); got != mac {
		t.Errorf("macvtap mac %s, want the veth's %s", got, mac)
	}
	if got := eth0.Attrs().HardwareAddr.String(); got == mac || eth0.Attrs().RawFlags&unix.IFF_NOARP == 0 {
		t.Errorf("eth0 while attached: mac %s (pod mac %s), flags %#x; want another mac and NOARP", got, mac, eth0.Attrs().RawFlags)
	}
	att.CloseFiles()
	if err := Teardown(context.Background(), dir); err != nil {
		t.Fatal(err)
	}
	if after := pod.Snapshot(t); !slices.Equal(after, before) {
		t.Errorf("after teardown:\n%s\nbefore:\n%s", strings.Join(after, "\n"), strings.Join(before, "\n"))
	}
	eth0, err = h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if eth0.Attrs().HardwareAddr.String() != mac || eth0.Attrs().RawFlags&unix.IFF_NOARP != 0 {
		t.Errorf("eth0 after teardown: mac %s flags %#x, want %s without NOARP", eth0.Attrs().HardwareAddr, eth0.Attrs().RawFlags, mac)
	}

	// Only veths: a bridge is refused before anything is made.
	if err := pod.Do(func() error { return netlink.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}) }); err != nil {
		t.Fatal(err)
	}
	withBridge := pod.Snapshot(t)
	if _, err := Attach(context.Background(), t.TempDir(), Config{NetNS: pod.Path, Model: ModelMacvtap}); err == nil || !strings.Contains(err.Error(), "br0") {
		t.Errorf("attach with a bridge: got %v, want an error naming br0", err)
	}
	if after := pod.Snapshot(t); !slices.Equal(after, withBridge) {
		t.Errorf("after a refused attach:\n%s\nbefore:\n%s", strings.Join(after, "\n"), strings.Join(withBridge, "\n"))
	}
}
