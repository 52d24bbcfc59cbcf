package network

import (
	"net"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func mustCIDR(t *testing.T, s string) *net.IPNet {
	t.Helper()
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		t.Fatal(err)
	}
	n.IP = ip
	return n
}

func TestGuestInterface(t *testing.T) {
	mac, _ := net.ParseMAC("02:42:0a:d5:00:02")
	l := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0", MTU: 1450, HardwareAddr: mac, Index: 3}}
	got := guestInterface(l, []netlink.Addr{
		{IPNet: mustCIDR(t, "10.213.0.2/24")},
		{IPNet: mustCIDR(t, "fd00:213::2/64")},
		{IPNet: mustCIDR(t, "fe80::42:aff:fed5:2/64")},
	})
	if got.Name != "eth0" || got.Mtu != 1450 || got.HwAddr != "02:42:0a:d5:00:02" {
		t.Fatalf("got %v", got)
	}
	if len(got.Addresses) != 2 {
		t.Fatalf("addresses: got %v, want the v4 and the global v6 one", got.Addresses)
	}
	if a := got.Addresses[0]; a.Family != 4 || a.Address != "10.213.0.2" || a.PrefixLen != 24 {
		t.Fatalf("v4: got %v", a)
	}
	if a := got.Addresses[1]; a.Family != 6 || a.Address != "fd00:213::2" || a.PrefixLen != 64 {
		t.Fatalf("v6: got %v", a)
	}
}

func TestGuestRoutes(t *testing.T) {
	names := map[int]string{3: "eth0"}
	routes := []netlink.Route{
		{LinkIndex: 3, Dst: mustCIDR(t, "10.213.0.0/24"), Protocol: unix.RTPROT_KERNEL, Scope: netlink.SCOPE_LINK, Type: unix.RTN_UNICAST, Table: unix.RT_TABLE_MAIN},
		{LinkIndex: 3, Gw: net.ParseIP("10.213.0.1"), Protocol: unix.RTPROT_BOOT, Type: unix.RTN_UNICAST, Table: unix.RT_TABLE_MAIN, Family: unix.AF_INET},
		{LinkIndex: 3, Dst: mustCIDR(t, "10.99.0.0/16"), Scope: netlink.SCOPE_LINK, Protocol: unix.RTPROT_BOOT, Type: unix.RTN_UNICAST, Table: unix.RT_TABLE_MAIN, Family: unix.AF_INET},
		{LinkIndex: 3, Dst: mustCIDR(t, "fe80::/64"), Protocol: unix.RTPROT_BOOT, Type: unix.RTN_UNICAST, Family: unix.AF_INET6},
		{LinkIndex: 3, Gw: net.ParseIP("fd00:213::1"), Protocol: unix.RTPROT_BOOT, Type: unix.RTN_UNICAST, Family: unix.AF_INET6},
		{LinkIndex: 9, Gw: net.ParseIP("192.168.0.1"), Protocol: unix.RTPROT_BOOT, Type: unix.RTN_UNICAST},
	}
	got := guestRoutes(routes, names)
	want := []string{"default via 10.213.0.1 dev eth0 family 4", "10.99.0.0/16 via  dev eth0 family 4", "default via fd00:213::1 dev eth0 family 6"}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i, r := range got {
		s := r.Dest + " via " + r.Gateway + " dev " + r.Device + " family " + string(rune('0'+r.Family))
		if s != want[i] {
			t.Errorf("route %d: got %q, want %q", i, s, want[i])
		}
	}
	if got[1].Scope != uint32(netlink.SCOPE_LINK) {
		t.Errorf("on-link route scope: got %d", got[1].Scope)
	}
}

func TestGuestNeighbors(t *testing.T) {
	mac, _ := net.ParseMAC("02:00:00:00:00:01")
	got := guestNeighbors([]netlink.Neigh{
		{LinkIndex: 3, IP: net.ParseIP("10.213.0.1"), HardwareAddr: mac, State: netlink.NUD_PERMANENT},
		{LinkIndex: 3, IP: net.ParseIP("10.213.0.7"), HardwareAddr: mac, State: netlink.NUD_REACHABLE},
		{LinkIndex: 4, IP: net.ParseIP("10.213.0.8"), HardwareAddr: mac, State: netlink.NUD_PERMANENT},
	}, map[int]string{3: "eth0"})
	if len(got) != 1 || got[0].ToIpAddress.Address != "10.213.0.1" || got[0].Device != "eth0" || got[0].LlAddr != mac.String() {
		t.Fatalf("got %v, want the one permanent entry on eth0", got)
	}
}
