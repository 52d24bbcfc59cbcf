package network

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// vhostNetPath is the vhost-net device; without it the VMM runs virtio-net itself.
const vhostNetPath = "/dev/vhost-net"

// attachable are the link types the tcfilter model joins to a tap.
var attachable = map[string]bool{"veth": true, "macvlan": true, "ipvlan": true}

// Attach joins the VM to the interfaces in cfg.NetNS (see the package comment) and records
// what it creates in dir (StateName). With no netns or the none model it attaches nothing.
// On error everything it created is removed again and no descriptor is left open.
func Attach(ctx context.Context, dir string, cfg Config) (_ *Attachment, retErr error) {
	model, err := ParseModel(string(cfg.Model))
	if err != nil {
		return nil, err
	}
	if cfg.NetNS == "" || model == ModelNone {
		return &Attachment{}, nil
	}
	ns, err := openNetNS(cfg.NetNS)
	if err != nil {
		return nil, err
	}
	defer ns.Close()

	st := &State{NetNS: cfg.NetNS}
	if err := saveState(dir, st); err != nil {
		return nil, err
	}
	att := &Attachment{}
	defer func() {
		if retErr != nil {
			att.CloseFiles()
			if err := Teardown(context.WithoutCancel(ctx), dir); err != nil {
				log.G(ctx).WithError(err).Warn("remove a partial network attachment")
			}
		}
	}()
	err = InNetNS(ns, func() error { return attach(ctx, dir, st, cfg, att) })
	if err != nil {
		return nil, fmt.Errorf("attach pod network %s: %w", cfg.NetNS, err)
	}
	return att, nil
}

// Rescan brings the attachment recorded in dir up to date with the namespace, for
// interfaces the manager added or removed after Attach (nerdctl and docker-style managers
// run CNI from an OCI hook once the namespace exists). Interfaces that appeared are
// attached as Attach does: the Attachment has their NICs and Interfaces, and the Routes and
// Neighbors of every attached interface. Endpoints whose interface is gone are in Gone; they
// stay recorded until Detach removes them, after the VM let go of their taps; when the
// namespace itself is gone, so are they all. With no state (no netns, or the none model)
// there is nothing to rescan. On error what this rescan created is removed again.
func Rescan(ctx context.Context, dir string, cfg Config) (_ *Attachment, retErr error) {
	st, err := LoadState(dir)
	if errdefs.IsNotFound(err) {
		return &Attachment{}, nil
	}
	if err != nil {
		return nil, err
	}
	ns, err := openNetNS(st.NetNS)
	if errdefs.IsNotFound(err) {
		// The manager removed the namespace, and every interface in it.
		return &Attachment{Gone: slices.Clone(st.Endpoints)}, nil
	}
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	known := len(st.Endpoints)
	att := &Attachment{}
	defer func() {
		if retErr == nil {
			return
		}
		att.CloseFiles()
		added := slices.Clone(st.Endpoints[known:])
		for _, ep := range added {
			if err := Detach(context.WithoutCancel(ctx), dir, ep); err != nil {
				log.G(ctx).WithError(err).Warn("remove a partial network attachment")
			}
		}
	}()
	err = InNetNS(ns, func() error { return attach(ctx, dir, st, cfg, att) })
	if err != nil {
		return nil, fmt.Errorf("rescan pod network %s: %w", st.NetNS, err)
	}
	return att, nil
}

// openNetNS opens the namespace at path; a path that does not exist is ErrNotFound.
func openNetNS(path string) (netns.NsHandle, error) {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return ns, fmt.Errorf("pod network namespace %s does not exist: %w", path, errdefs.ErrNotFound)
		}
		return ns, fmt.Errorf("open pod network namespace %s: %w", path, err)
	}
	return ns, nil
}

// attach does the work of Attach and Rescan on a thread in the pod's network namespace:
// it attaches the interfaces st does not record yet, and lists in att.Gone the recorded
// ones that are gone.
func attach(ctx context.Context, dir string, st *State, cfg Config, att *Attachment) error {
	model, err := ParseModel(string(cfg.Model))
	if err != nil {
		return err
	}
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		return fmt.Errorf("list interfaces: %w", err)
	}
	present := map[int]string{}
	for _, l := range links {
		present[l.Attrs().Index] = l.Attrs().Name
	}
	// names are the attached interfaces by index, for the guest's routes and neighbours.
	names := map[int]string{}
	ours := map[int]bool{}
	for _, ep := range st.Endpoints {
		ours[ep.TapIndex] = true
		if present[ep.LinkIndex] == ep.Link {
			names[ep.LinkIndex] = ep.Link
			continue
		}
		att.Gone = append(att.Gone, ep)
	}
	// Refuse what cannot be attached before anything is created.
	var pod []netlink.Link
	for _, l := range links {
		a := l.Attrs()
		if a.Flags&net.FlagLoopback != 0 || names[a.Index] != "" || ours[a.Index] {
			continue
		}
		if model == ModelMacvtap && l.Type() != "veth" {
			return fmt.Errorf("interface %s has type %q: %w: the macvtap model attaches veth interfaces",
				a.Name, l.Type(), errdefs.ErrNotImplemented)
		}
		if !attachable[l.Type()] {
			return fmt.Errorf("interface %s has type %q: %w: Vessel attaches veth, macvlan and ipvlan interfaces",
				a.Name, l.Type(), errdefs.ErrNotImplemented)
		}
		if len(a.HardwareAddr) != 6 {
			return fmt.Errorf("interface %s has no Ethernet address (%q): %w", a.Name, a.HardwareAddr, errdefs.ErrInvalidArgument)
		}
		qdiscs, err := h.QdiscList(l)
		if err != nil {
			return fmt.Errorf("qdiscs of %s: %w", a.Name, err)
		}
		for _, q := range qdiscs {
			if model == ModelTCFilter && q.Type() == "ingress" || q.Attrs().Parent == netlink.HANDLE_INGRESS || q.Attrs().Parent == netlink.HANDLE_CLSACT {
				return fmt.Errorf("interface %s already has an %s qdisc: %w: the tcfilter model adds its own ingress qdisc",
					a.Name, q.Type(), errdefs.ErrFailedPrecondition)
			}
		}
		pod = append(pod, l)
	}

	for _, l := range pod {
		a := l.Attrs()
		n := st.freeNumber()
		ep := Endpoint{Link: a.Name, LinkIndex: a.Index, Tap: tapName(n), NIC: nicID(n)}
		st.Endpoints = append(st.Endpoints, ep)
		// The tap is recorded before it exists: a crash in between leaves a name that
		// Teardown removes if it is there.
		if err := saveState(dir, st); err != nil {
			return err
		}
		join := joinTap
		if model == ModelMacvtap {
			join = joinMacvtap
		}
		nic, err := join(h, l, &st.Endpoints[len(st.Endpoints)-1], cfg.Queues, func() error { return saveState(dir, st) })
		if nic.Tap != nil {
			nic.ID = ep.NIC
			att.NICs = append(att.NICs, nic)
			att.Added = append(att.Added, ep)
		}
		if err != nil {
			return fmt.Errorf("interface %s: %w", a.Name, err)
		}
		if cfg.VhostNet {
			if err := openVhost(&att.NICs[len(att.NICs)-1]); err != nil {
				return err
			}
		}
		addrs, err := h.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			return fmt.Errorf("addresses of %s: %w", a.Name, err)
		}
		att.Interfaces = append(att.Interfaces, guestInterface(l, addrs))
		names[a.Index] = a.Name
	}
	if len(pod) == 0 {
		return nil
	}
	routes, err := h.RouteList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("list routes: %w", err)
	}
	att.Routes = guestRoutes(routes, names)
	neighs, err := h.NeighList(0, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("list neighbours: %w", err)
	}
	att.Neighbors = guestNeighbors(neighs, names)
	log.G(ctx).WithField("netns", st.NetNS).WithField("interfaces", len(pod)).Debug("pod network attached")
	return nil
}

// openVhost opens a vhost-net descriptor for each queue of nic; without /dev/vhost-net it
// opens none. On error the ones it opened are closed.
func openVhost(nic *NIC) error {
	var opened []*os.File
	for range 1 + len(nic.MoreQueues) {
		f, err := os.OpenFile(vhostNetPath, os.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			for _, o := range opened {
				_ = o.Close()
			}
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return fmt.Errorf("open %s: %w", vhostNetPath, err)
		}
		opened = append(opened, f)
	}
	nic.Vhost = opened[0]
	for i := range nic.MoreQueues {
		nic.MoreQueues[i].Vhost = opened[i+1]
	}
	return nil
}

// joinTap creates ep's tap with l's MTU and queues queue pairs (IFF_MULTI_QUEUE when
// more than one), brings it up and mirrors l and the tap into each other; save records ep
// after each change to it. The returned NIC has the tap's descriptors once it exists,
// also with an error.
func joinTap(h *netlink.Handle, l netlink.Link, ep *Endpoint, queues int, save func() error) (NIC, error) {
	a := l.Attrs()
	nic := NIC{MAC: a.HardwareAddr.String()}
	if queues < 1 {
		queues = 1
	}
	// The first queue creates the tap, exclusively (never one of the manager's by the same
	// name); the further queues attach to it.
	tap := &netlink.Tuntap{
		LinkAttrs: netlink.LinkAttrs{Name: ep.Tap},
		Mode:      netlink.TUNTAP_MODE_TAP,
		Flags:     netlink.TUNTAP_NO_PI | netlink.TUNTAP_VNET_HDR | netlink.TUNTAP_TUN_EXCL,
		Queues:    1,
	}
	if queues > 1 {
		tap.Flags |= netlink.TUNTAP_MULTI_QUEUE
	}
	if err := h.LinkAdd(tap); err != nil {
		return nic, fmt.Errorf("create tap %s: %w", ep.Tap, err)
	}
	if len(tap.Fds) != 1 {
		for _, f := range tap.Fds {
			_ = f.Close()
		}
		return nic, fmt.Errorf("create tap %s: got %d queue descriptors, want 1", ep.Tap, len(tap.Fds))
	}
	nic.Tap = tap.Fds[0]
	ep.TapIndex = tap.Attrs().Index
	if err := save(); err != nil {
		return nic, err
	}
	for k := 1; k < queues; k++ {
		f, err := openTapQueue(ep.Tap, uint16(tap.Flags&^netlink.TUNTAP_TUN_EXCL)|uint16(netlink.TUNTAP_MODE_TAP))
		if err != nil {
			return nic, fmt.Errorf("tap %s: queue %d: %w", ep.Tap, k, err)
		}
		nic.MoreQueues = append(nic.MoreQueues, Queue{Tap: f})
	}
	if err := h.LinkSetMTU(tap, a.MTU); err != nil {
		return nic, fmt.Errorf("set mtu of tap %s to %d: %w", ep.Tap, a.MTU, err)
	}
	if err := h.LinkSetUp(tap); err != nil {
		return nic, fmt.Errorf("set tap %s up: %w", ep.Tap, err)
	}
	if err := addIngress(h, ep.TapIndex); err != nil {
		return nic, fmt.Errorf("tap %s: %w", ep.Tap, err)
	}
	ep.LinkIngress = true
	if err := save(); err != nil {
		return nic, err
	}
	if err := addIngress(h, a.Index); err != nil {
		return nic, err
	}
	if err := addRedirect(h, a.Index, ep.TapIndex); err != nil {
		return nic, fmt.Errorf("redirect %s to %s: %w", a.Name, ep.Tap, err)
	}
	if err := addRedirect(h, ep.TapIndex, a.Index); err != nil {
		return nic, fmt.Errorf("redirect %s to %s: %w", ep.Tap, a.Name, err)
	}
	return nic, nil
}

func ingressQdisc(index int) *netlink.Ingress {
	return &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{
		LinkIndex: index,
		Handle:    netlink.MakeHandle(0xffff, 0),
		Parent:    netlink.HANDLE_INGRESS,
	}}
}

func addIngress(h *netlink.Handle, index int) error {
	if err := h.QdiscAdd(ingressQdisc(index)); err != nil {
		return fmt.Errorf("add ingress qdisc: %w", err)
	}
	return nil
}

// addRedirect makes every frame arriving on link from leave through link to (a u32 filter
// matching everything, with a mirred egress redirect).
func addRedirect(h *netlink.Handle, from, to int) error {
	return h.FilterAdd(&netlink.U32{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: from,
			Parent:    netlink.MakeHandle(0xffff, 0),
			Priority:  1,
			Protocol:  unix.ETH_P_ALL,
		},
		Actions: []netlink.Action{&netlink.MirredAction{
			ActionAttrs:  netlink.ActionAttrs{Action: netlink.TC_ACT_STOLEN},
			MirredAction: netlink.TCA_EGRESS_REDIR,
			Ifindex:      to,
		}},
	})
}

// Teardown removes what the state in dir records (taps, and the ingress qdiscs with their
// filters on the manager's interfaces), then the state, then the network namespace
// CreateNetNS pinned in dir, if any. The manager's interfaces, their addresses and routes
// stay as they were. No state, or a network namespace that no longer exists (and with it
// everything in it), is not an error.
func Teardown(ctx context.Context, dir string) error {
	if err := teardownLinks(ctx, dir); err != nil {
		return err
	}
	return RemoveNetNS(dir)
}

func teardownLinks(ctx context.Context, dir string) error {
	st, err := LoadState(dir)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	ns, err := netns.GetFromPath(st.NetNS)
	if errors.Is(err, os.ErrNotExist) {
		log.G(ctx).WithField("netns", st.NetNS).Debug("pod network namespace is gone; nothing to tear down")
		return removeState(dir)
	}
	if err != nil {
		return fmt.Errorf("tear down pod network: open %s: %w", st.NetNS, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("tear down pod network %s: netlink: %w", st.NetNS, err)
	}
	defer h.Close()
	var errs []error
	for _, ep := range st.Endpoints {
		if err := detach(h, ep); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("tear down pod network %s: %w", st.NetNS, errors.Join(errs...))
	}
	log.G(ctx).WithField("netns", st.NetNS).Debug("pod network detached")
	return removeState(dir)
}

// Detach removes what the state in dir records for endpoint ep (its tap, with its qdisc
// and filter, and the ingress qdisc on the manager's interface) and drops ep from the
// state. The VM must have let go of the tap first (hypervisor.NICHotplugger.DetachNIC).
func Detach(ctx context.Context, dir string, ep Endpoint) error {
	st, err := LoadState(dir)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(st.Endpoints, func(e Endpoint) bool { return e.Tap == ep.Tap })
	if i < 0 {
		return nil
	}
	ns, err := netns.GetFromPath(st.NetNS)
	switch {
	case errors.Is(err, os.ErrNotExist):
		// Gone with everything in it.
	case err != nil:
		return fmt.Errorf("detach %s: open %s: %w", ep.Link, st.NetNS, err)
	default:
		defer ns.Close()
		h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
		if err != nil {
			return fmt.Errorf("detach %s: netlink: %w", ep.Link, err)
		}
		defer h.Close()
		if err := detach(h, st.Endpoints[i]); err != nil {
			return fmt.Errorf("detach %s: %w", ep.Link, err)
		}
	}
	st.Endpoints = slices.Delete(st.Endpoints, i, i+1)
	log.G(ctx).WithField("interface", ep.Link).WithField("tap", ep.Tap).Debug("pod interface detached")
	return saveState(dir, st)
}

// detach removes ep's tap (with its qdisc and filter) and the ingress qdisc Attach added to
// the manager's interface (with its filter); for a macvtap it removes the macvtap and gives
// the manager's interface its MAC and ARP back. What is already gone is skipped.
func detach(h *netlink.Handle, ep Endpoint) error {
	var errs []error
	tapType := "tuntap"
	if ep.Macvtap {
		tapType = "macvtap"
	}
	if l, err := h.LinkByName(ep.Tap); err == nil {
		if l.Type() == tapType && (ep.TapIndex == 0 || l.Attrs().Index == ep.TapIndex) {
			if err := h.LinkDel(l); err != nil {
				errs = append(errs, fmt.Errorf("remove tap %s: %w", ep.Tap, err))
			}
		}
	} else if !isLinkNotFound(err) {
		errs = append(errs, fmt.Errorf("tap %s: %w", ep.Tap, err))
	}
	if ep.LinkMAC != "" || ep.LinkNoARP {
		if err := restoreLink(h, ep); err != nil {
			errs = append(errs, err)
		}
	}
	if ep.LinkIngress {
		l, err := h.LinkByIndex(ep.LinkIndex)
		switch {
		case err == nil && l.Attrs().Name == ep.Link:
			if err := h.QdiscDel(ingressQdisc(ep.LinkIndex)); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
				errs = append(errs, fmt.Errorf("remove ingress qdisc of %s: %w", ep.Link, err))
			}
		case err == nil, isLinkNotFound(err):
			// The manager removed or replaced its interface: nothing of ours is on it.
		default:
			errs = append(errs, fmt.Errorf("interface %s: %w", ep.Link, err))
		}
	}
	return errors.Join(errs...)
}

func isLinkNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
}

// openTapQueue attaches a further queue to the multiqueue tap name (TUNSETIFF with flags,
// which include IFF_MULTI_QUEUE) and returns its descriptor.
func openTapQueue(name string, flags uint16) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("TUNSETIFF: %w", err)
	}
	return os.NewFile(uintptr(fd), "/dev/net/tun:"+name), nil
}

// joinMacvtap attaches l (a veth) with the macvtap model: l gets a random MAC and
// IFF_NOARP (its own stack must not answer for the pod's addresses, which the guest now
// has), and a macvtap device ep.Tap in bridge mode on l takes l's MAC and MTU; the NIC's
// descriptors are the macvtap's character device, opened once per queue. save records ep
// after each change; the returned NIC has the descriptors opened so far, also with an
// error.
func joinMacvtap(h *netlink.Handle, l netlink.Link, ep *Endpoint, queues int, save func() error) (NIC, error) {
	a := l.Attrs()
	nic := NIC{MAC: a.HardwareAddr.String()}
	if queues < 1 {
		queues = 1
	}
	ep.Macvtap = true
	ep.LinkMAC = a.HardwareAddr.String()
	ep.LinkNoARP = a.RawFlags&unix.IFF_NOARP == 0
	if err := save(); err != nil {
		return nic, err
	}
	random := make(net.HardwareAddr, 6)
	if _, err := rand.Read(random); err != nil {
		return nic, fmt.Errorf("random mac for %s: %w", a.Name, err)
	}
	random[0] = random[0]&^1 | 2 // unicast, locally administered
	if err := h.LinkSetHardwareAddr(l, random); err != nil {
		return nic, fmt.Errorf("set a random mac on %s: %w", a.Name, err)
	}
	if ep.LinkNoARP {
		if err := h.LinkSetARPOff(l); err != nil {
			return nic, fmt.Errorf("set noarp on %s: %w", a.Name, err)
		}
	}
	mvt := &netlink.Macvtap{Macvlan: netlink.Macvlan{
		LinkAttrs: netlink.LinkAttrs{Name: ep.Tap, ParentIndex: a.Index, MTU: a.MTU, HardwareAddr: a.HardwareAddr, TxQLen: -1},
		Mode:      netlink.MACVLAN_MODE_BRIDGE,
	}}
	if err := h.LinkAdd(mvt); err != nil {
		return nic, fmt.Errorf("create macvtap %s on %s: %w", ep.Tap, a.Name, err)
	}
	created, err := h.LinkByName(ep.Tap)
	if err != nil {
		return nic, fmt.Errorf("macvtap %s: %w", ep.Tap, err)
	}
	ep.TapIndex = created.Attrs().Index
	if err := save(); err != nil {
		return nic, err
	}
	if err := h.LinkSetUp(created); err != nil {
		return nic, fmt.Errorf("set macvtap %s up: %w", ep.Tap, err)
	}
	// The character device is named after the macvtap's index; each open is a queue.
	dev := fmt.Sprintf("/dev/tap%d", ep.TapIndex)
	for k := 0; k < queues; k++ {
		f, err := os.OpenFile(dev, os.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return nic, fmt.Errorf("macvtap %s: open %s: %w", ep.Tap, dev, err)
		}
		if k == 0 {
			nic.Tap = f
		} else {
			nic.MoreQueues = append(nic.MoreQueues, Queue{Tap: f})
		}
	}
	return nic, nil
}

// restoreLink gives the manager's interface of a macvtap endpoint its MAC and ARP back,
// when it is still there under its name.
func restoreLink(h *netlink.Handle, ep Endpoint) error {
	l, err := h.LinkByIndex(ep.LinkIndex)
	if isLinkNotFound(err) || err == nil && l.Attrs().Name != ep.Link {
		return nil // the manager removed or replaced its interface
	}
	if err != nil {
		return fmt.Errorf("interface %s: %w", ep.Link, err)
	}
	var errs []error
	if ep.LinkMAC != "" {
		mac, err := net.ParseMAC(ep.LinkMAC)
		if err != nil {
			return fmt.Errorf("recorded mac of %s: %w", ep.Link, err)
		}
		if !bytes.Equal(l.Attrs().HardwareAddr, mac) {
			if err := h.LinkSetHardwareAddr(l, mac); err != nil {
				errs = append(errs, fmt.Errorf("give %s its mac %s back: %w", ep.Link, mac, err))
			}
		}
	}
	if ep.LinkNoARP {
		if err := h.LinkSetARPOn(l); err != nil {
			errs = append(errs, fmt.Errorf("give %s its arp back: %w", ep.Link, err))
		}
	}
	return errors.Join(errs...)
}
