//go:build linux

// Package netcfg configures the guest's network over netlink: it lists and updates
// interfaces (addresses, MTU, name, state), replaces the routing table and adds static ARP
// neighbours, turning the agent protocol's messages into netlink requests and back.
//
// All of it happens in the pod's network namespace (PodNS), not the agent's: the containers
// of a pod share it, as they share the pause container's on the host, and because it is not
// the agent's own, libcontainer applies the containers' net.* sysctls there. A NIC the host
// configures is moved into it from the agent's namespace, where the kernel created it.
package netcfg

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
)

// LinkUp brings the named link up (the loopback at boot). It uses the SIOCSIFFLAGS ioctl,
// not netlink: on the agent's boot path the netlink library's first request (socket set
// up, link dump and attribute parsing) cost about 50 ms under TCG, the ioctl a few.
func LinkUp(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("link %s: socket: %w", name, err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return fmt.Errorf("link %s: %w", name, err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("link %s: get flags: %w", name, err)
	}
	if ifr.Uint16()&unix.IFF_UP != 0 {
		return nil
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	return nil
}

// PodNS is the pod's network namespace in the guest, pinned by a bind mount at its path.
type PodNS struct {
	path string
	// h works in the pod namespace, root in the agent's.
	h    *netlink.Handle
	root *netlink.Handle
	ns   netns.NsHandle
}

// NewPodNS makes a network namespace with its loopback up and pins it at path (a file it
// creates; the directory is created too).
func NewPodNS(path string) (_ *PodNS, retErr error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("pod netns: %w", err)
	}
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		return nil, fmt.Errorf("pod netns: %w", err)
	}
	defer func() {
		if retErr != nil {
			_ = unix.Unmount(path, unix.MNT_DETACH)
			_ = os.Remove(path)
		}
	}()
	errc := make(chan error, 1)
	go func() { // owner: NewPodNS, which waits for it
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("unshare: %w", err)
			return
		}
		err = unix.Mount(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), path, "", unix.MS_BIND, "")
		if err == nil {
			err = LinkUp("lo")
		}
		if rerr := netns.Set(orig); rerr != nil {
			errc <- errors.Join(err, rerr) // the thread stays locked and ends with the goroutine
			return
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	if err := <-errc; err != nil {
		return nil, fmt.Errorf("pod netns %s: %w", path, err)
	}
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("pod netns %s: %w", path, err)
	}
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("pod netns %s: netlink: %w", path, err)
	}
	root, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		h.Close()
		ns.Close()
		return nil, fmt.Errorf("netlink: %w", err)
	}
	return &PodNS{path: path, h: h, root: root, ns: ns}, nil
}

// Path is where the namespace is pinned: the network namespace path of every container.
func (p *PodNS) Path() string { return p.path }

// ListInterfaces returns every link with its addresses.
func (p *PodNS) ListInterfaces() ([]*agentv1.Interface, error) {
	links, err := p.h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	out := make([]*agentv1.Interface, 0, len(links))
	for _, l := range links {
		in, err := p.toInterface(l)
		if err != nil {
			return nil, err
		}
		out = append(out, in)
	}
	return out, nil
}

func (p *PodNS) toInterface(l netlink.Link) (*agentv1.Interface, error) {
	a := l.Attrs()
	addrs, err := p.h.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("addresses of %s: %w", a.Name, err)
	}
	in := &agentv1.Interface{
		Device: a.Name,
		Name:   a.Name,
		Mtu:    uint64(a.MTU),
		HwAddr: a.HardwareAddr.String(),
		Type:   l.Type(),
	}
	for _, ad := range addrs {
		ones, _ := ad.Mask.Size()
		fam := uint32(4)
		if ad.IP.To4() == nil {
			fam = 6
		}
		in.Addresses = append(in.Addresses, &agentv1.IPAddress{Family: fam, Address: ad.IP.String(), PrefixLen: uint32(ones)})
	}
	return in, nil
}

// ListRoutes returns the main routing table (IPv4 and IPv6).
func (p *PodNS) ListRoutes() ([]*agentv1.Route, error) {
	routes, err := p.h.RouteList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	names := map[int]string{}
	out := make([]*agentv1.Route, 0, len(routes))
	for _, r := range routes {
		dev, ok := names[r.LinkIndex]
		if !ok && r.LinkIndex > 0 {
			if l, err := p.h.LinkByIndex(r.LinkIndex); err == nil {
				dev = l.Attrs().Name
			}
			names[r.LinkIndex] = dev
		}
		rt := &agentv1.Route{Device: dev, Scope: uint32(r.Scope), Family: familyOf(r.Family)}
		if r.Dst != nil {
			rt.Dest = r.Dst.String()
		} else {
			rt.Dest = "default"
		}
		if r.Gw != nil {
			rt.Gateway = r.Gw.String()
		}
		if r.Src != nil {
			rt.Source = r.Src.String()
		}
		out = append(out, rt)
	}
	return out, nil
}

func familyOf(f int) uint32 {
	if f == unix.AF_INET6 {
		return 6
	}
	return 4
}

// findLink finds the link an update is for, in the pod namespace or else in the agent's,
// where the kernel created the NIC, and moves it into the pod namespace: by MAC address
// first (the host knows the MAC, not the name the guest kernel gave), then by device name,
// then by name.
func (p *PodNS) findLink(in *agentv1.Interface) (netlink.Link, error) {
	for _, h := range []*netlink.Handle{p.h, p.root} {
		l, err := findIn(h, in)
		if err != nil {
			return nil, err
		}
		if l == nil {
			continue
		}
		if h == p.h {
			return l, nil
		}
		if l.Attrs().Flags&net.FlagLoopback != 0 {
			break
		}
		// The kernel names a hot-plugged NIC after the free names of the agent's namespace
		// (eth0 again once the first NIC moved out): move it under a name of its own.
		if _, err := p.h.LinkByName(l.Attrs().Name); err == nil {
			tmp := fmt.Sprintf("vsl%d", l.Attrs().Index)
			if err := p.root.LinkSetName(l, tmp); err != nil {
				return nil, fmt.Errorf("rename %s to %s before moving it into the pod network namespace: %w", l.Attrs().Name, tmp, err)
			}
		}
		if err := p.root.LinkSetNsFd(l, int(p.ns)); err != nil {
			return nil, fmt.Errorf("move %s into the pod network namespace: %w", l.Attrs().Name, err)
		}
		moved, err := findIn(p.h, &agentv1.Interface{HwAddr: l.Attrs().HardwareAddr.String()})
		if err != nil {
			return nil, err
		}
		if moved != nil {
			return moved, nil
		}
		return nil, fmt.Errorf("%s moved into the pod network namespace is not there", l.Attrs().Name)
	}
	return nil, fmt.Errorf("interface (hw_addr %q, device %q, name %q): %w", in.GetHwAddr(), in.GetDevice(), in.GetName(), errdefs.ErrNotFound)
}

// Has tells whether in's link exists, in the pod namespace or in the agent's.
func (p *PodNS) Has(in *agentv1.Interface) (bool, error) {
	for _, h := range []*netlink.Handle{p.h, p.root} {
		l, err := findIn(h, in)
		if err != nil || l != nil {
			return l != nil, err
		}
	}
	return false, nil
}

// findIn looks for in's link through h; nil when there is none.
func findIn(h *netlink.Handle, in *agentv1.Interface) (netlink.Link, error) {
	links, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	if hw := strings.ToLower(in.GetHwAddr()); hw != "" {
		for _, l := range links {
			if strings.EqualFold(l.Attrs().HardwareAddr.String(), hw) {
				return l, nil
			}
		}
		return nil, nil // a MAC names the NIC; a name must not pick another one
	}
	for _, name := range []string{in.GetDevice(), in.GetName()} {
		if name == "" {
			continue
		}
		for _, l := range links {
			if l.Attrs().Name == name {
				return l, nil
			}
		}
	}
	return nil, nil
}

// UpdateInterface sets the link's name, MTU and addresses (exactly those given) and brings it
// up. It returns the interface as it is afterwards.
func (p *PodNS) UpdateInterface(ctx context.Context, in *agentv1.Interface) (*agentv1.Interface, error) {
	if in == nil {
		return nil, fmt.Errorf("%w: interface is missing", errdefs.ErrInvalidArgument)
	}
	want := make([]*netlink.Addr, 0, len(in.GetAddresses()))
	for _, a := range in.GetAddresses() {
		ad, err := netlink.ParseAddr(fmt.Sprintf("%s/%d", a.GetAddress(), a.GetPrefixLen()))
		if err != nil {
			return nil, fmt.Errorf("%w: interface address %q/%d: %w", errdefs.ErrInvalidArgument, a.GetAddress(), a.GetPrefixLen(), err)
		}
		want = append(want, ad)
	}
	l, err := p.findLink(in)
	if err != nil {
		return nil, err
	}
	name := l.Attrs().Name
	if err := p.h.LinkSetDown(l); err != nil {
		return nil, fmt.Errorf("set %s down: %w", name, err)
	}
	if in.GetName() != "" && in.GetName() != name {
		if err := p.h.LinkSetName(l, in.GetName()); err != nil {
			return nil, fmt.Errorf("rename %s to %s: %w", name, in.GetName(), err)
		}
		name = in.GetName()
	}
	if in.GetMtu() > 0 {
		if err := p.h.LinkSetMTU(l, int(in.GetMtu())); err != nil {
			return nil, fmt.Errorf("set mtu of %s to %d: %w", name, in.GetMtu(), err)
		}
	}
	have, err := p.h.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("addresses of %s: %w", name, err)
	}
	for _, h := range have {
		if h.IP.IsLinkLocalUnicast() || containsAddr(want, h) {
			continue
		}
		if err := p.h.AddrDel(l, &h); err != nil {
			return nil, fmt.Errorf("remove address %s from %s: %w", h.IPNet, name, err)
		}
	}
	for _, w := range want {
		if err := p.h.AddrReplace(l, w); err != nil {
			return nil, fmt.Errorf("add address %s to %s: %w", w.IPNet, name, err)
		}
	}
	if err := p.h.LinkSetUp(l); err != nil {
		return nil, fmt.Errorf("set %s up: %w", name, err)
	}
	l, err = p.h.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("link %s: %w", name, err)
	}
	log.G(ctx).WithField("interface", name).Debug("interface updated")
	return p.toInterface(l)
}

func containsAddr(list []*netlink.Addr, a netlink.Addr) bool {
	for _, w := range list {
		if w.IPNet.String() == a.IPNet.String() {
			return true
		}
	}
	return false
}

// UpdateRoutes replaces the main table's routes on non-loopback links with the given ones:
// routes without a gateway first (they make gateways reachable), then the others. It returns
// the table afterwards.
func (p *PodNS) UpdateRoutes(ctx context.Context, routes []*agentv1.Route) ([]*agentv1.Route, error) {
	var direct, viaGw []*netlink.Route
	for i, r := range routes {
		nr, err := toNetlinkRoute(p.h, r)
		if err != nil {
			return nil, fmt.Errorf("route %d: %w", i, err)
		}
		if nr.Gw == nil {
			direct = append(direct, nr)
		} else {
			viaGw = append(viaGw, nr)
		}
	}
	have, err := p.h.RouteList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	for _, h := range have {
		if h.LinkIndex <= 0 || p.isLoopback(h.LinkIndex) || (h.Dst != nil && h.Dst.IP.IsLinkLocalUnicast()) {
			continue
		}
		if h.Protocol == unix.RTPROT_KERNEL {
			continue // the kernel's prefix routes follow the addresses
		}
		if err := p.h.RouteDel(&h); err != nil && !errors.Is(err, unix.ESRCH) {
			return nil, fmt.Errorf("remove route %s: %w", h, err)
		}
	}
	for _, r := range append(direct, viaGw...) {
		if err := p.h.RouteReplace(r); err != nil {
			return nil, fmt.Errorf("add route %s: %w", r, err)
		}
	}
	log.G(ctx).Debugf("routes updated: %d", len(routes))
	return p.ListRoutes()
}

func (p *PodNS) isLoopback(index int) bool {
	l, err := p.h.LinkByIndex(index)
	return err == nil && l.Attrs().Flags&net.FlagLoopback != 0
}

func toNetlinkRoute(h *netlink.Handle, r *agentv1.Route) (*netlink.Route, error) {
	if r == nil {
		return nil, fmt.Errorf("%w: route is empty", errdefs.ErrInvalidArgument)
	}
	nr := &netlink.Route{Scope: netlink.Scope(r.GetScope())}
	if r.GetDevice() != "" {
		l, err := h.LinkByName(r.GetDevice())
		if err != nil {
			return nil, fmt.Errorf("route device %q: %w: %w", r.GetDevice(), errdefs.ErrNotFound, err)
		}
		nr.LinkIndex = l.Attrs().Index
	}
	if d := r.GetDest(); d != "" && d != "default" {
		if !strings.Contains(d, "/") {
			if ip := net.ParseIP(d); ip != nil && ip.To4() != nil {
				d += "/32"
			} else {
				d += "/128"
			}
		}
		_, dst, err := net.ParseCIDR(d)
		if err != nil {
			return nil, fmt.Errorf("%w: route dest %q: %w", errdefs.ErrInvalidArgument, r.GetDest(), err)
		}
		nr.Dst = dst
	}
	if g := r.GetGateway(); g != "" {
		if nr.Gw = net.ParseIP(g); nr.Gw == nil {
			return nil, fmt.Errorf("%w: route gateway %q is not an IP address", errdefs.ErrInvalidArgument, g)
		}
	}
	if s := r.GetSource(); s != "" {
		if nr.Src = net.ParseIP(s); nr.Src == nil {
			return nil, fmt.Errorf("%w: route source %q is not an IP address", errdefs.ErrInvalidArgument, s)
		}
	}
	return nr, nil
}

// AddARPNeighbors adds (or replaces) static neighbour entries.
func (p *PodNS) AddARPNeighbors(ctx context.Context, neighs []*agentv1.ARPNeighbor) error {
	for i, n := range neighs {
		ip := net.ParseIP(n.GetToIpAddress().GetAddress())
		if ip == nil {
			return fmt.Errorf("%w: neighbor %d: to_ip_address %q is not an IP address", errdefs.ErrInvalidArgument, i, n.GetToIpAddress().GetAddress())
		}
		mac, err := net.ParseMAC(n.GetLlAddr())
		if err != nil {
			return fmt.Errorf("%w: neighbor %d: ll_addr %q: %w", errdefs.ErrInvalidArgument, i, n.GetLlAddr(), err)
		}
		l, err := p.h.LinkByName(n.GetDevice())
		if err != nil {
			return fmt.Errorf("neighbor %d: device %q: %w: %w", i, n.GetDevice(), errdefs.ErrNotFound, err)
		}
		state := int(n.GetState())
		if state == 0 {
			state = netlink.NUD_PERMANENT
		}
		fam := netlink.FAMILY_V4
		if ip.To4() == nil {
			fam = netlink.FAMILY_V6
		}
		if err := p.h.NeighSet(&netlink.Neigh{
			LinkIndex: l.Attrs().Index, Family: fam, State: state, Flags: int(n.GetFlags()),
			IP: ip, HardwareAddr: mac,
		}); err != nil {
			return fmt.Errorf("add neighbor %s on %s: %w", ip, n.GetDevice(), err)
		}
	}
	log.G(ctx).Debugf("arp neighbors added: %d", len(neighs))
	return nil
}

// Stats returns traffic counters of every non-loopback link.
func (p *PodNS) Stats() ([]*agentv1.NetworkStats, error) {
	links, err := p.h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var out []*agentv1.NetworkStats
	for _, l := range links {
		a := l.Attrs()
		if a.Flags&net.FlagLoopback != 0 || a.Statistics == nil {
			continue
		}
		out = append(out, &agentv1.NetworkStats{
			Name: a.Name, RxBytes: a.Statistics.RxBytes, RxPackets: a.Statistics.RxPackets,
			TxBytes: a.Statistics.TxBytes, TxPackets: a.Statistics.TxPackets,
		})
	}
	return out, nil
}
