package network

import (
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
)

// guestInterface describes link l with addrs for the guest: same name, MAC, MTU and the
// global and site addresses (the guest derives its own IPv6 link-local address from the
// same MAC).
func guestInterface(l netlink.Link, addrs []netlink.Addr) *agentv1.Interface {
	a := l.Attrs()
	in := &agentv1.Interface{
		Device: a.Name,
		Name:   a.Name,
		Mtu:    uint64(a.MTU),
		HwAddr: a.HardwareAddr.String(),
	}
	for _, ad := range addrs {
		if ad.IPNet == nil || ad.IP.IsLinkLocalUnicast() || ad.IP.IsLoopback() {
			continue
		}
		ones, _ := ad.Mask.Size()
		fam := uint32(4)
		if ad.IP.To4() == nil {
			fam = 6
		}
		in.Addresses = append(in.Addresses, &agentv1.IPAddress{Family: fam, Address: ad.IP.String(), PrefixLen: uint32(ones)})
	}
	return in
}

// guestRoutes turns the main table's routes through the attached links (names by index)
// into the guest's. Routes the guest kernel makes itself are left out: prefix routes of
// addresses (protocol kernel), IPv6 link-local and multicast routes.
func guestRoutes(routes []netlink.Route, names map[int]string) []*agentv1.Route {
	var out []*agentv1.Route
	for _, r := range routes {
		dev, ok := names[r.LinkIndex]
		if !ok || r.Protocol == unix.RTPROT_KERNEL || r.Type != unix.RTN_UNICAST {
			continue
		}
		if r.Table != 0 && r.Table != unix.RT_TABLE_MAIN {
			continue
		}
		if r.Dst != nil && (r.Dst.IP.IsLinkLocalUnicast() || r.Dst.IP.IsMulticast()) {
			continue
		}
		rt := &agentv1.Route{Device: dev, Scope: uint32(r.Scope), Family: 4, Dest: "default"}
		if r.Family == unix.AF_INET6 || (r.Dst != nil && r.Dst.IP.To4() == nil) || (r.Gw != nil && r.Gw.To4() == nil) {
			rt.Family = 6
		}
		if r.Dst != nil && !isDefault(r.Dst) {
			rt.Dest = r.Dst.String()
		}
		if r.Gw != nil {
			rt.Gateway = r.Gw.String()
		}
		if r.Src != nil {
			rt.Source = r.Src.String()
		}
		out = append(out, rt)
	}
	return out
}

func isDefault(n *net.IPNet) bool {
	ones, _ := n.Mask.Size()
	return ones == 0 && n.IP.IsUnspecified()
}

// guestNeighbors turns the permanent neighbour entries of the attached links into the
// guest's static ones; learned entries are the guest's to learn again.
func guestNeighbors(neighs []netlink.Neigh, names map[int]string) []*agentv1.ARPNeighbor {
	var out []*agentv1.ARPNeighbor
	for _, n := range neighs {
		dev, ok := names[n.LinkIndex]
		if !ok || n.State&netlink.NUD_PERMANENT == 0 || n.IP == nil || len(n.HardwareAddr) == 0 {
			continue
		}
		if n.IP.IsLinkLocalMulticast() || n.IP.IsMulticast() {
			continue
		}
		fam := uint32(4)
		if n.IP.To4() == nil {
			fam = 6
		}
		out = append(out, &agentv1.ARPNeighbor{
			ToIpAddress: &agentv1.IPAddress{Family: fam, Address: n.IP.String()},
			Device:      dev,
			LlAddr:      n.HardwareAddr.String(),
			State:       int32(netlink.NUD_PERMANENT),
		})
	}
	return out
}
