//go:build linux

// Package nettest makes network namespaces and veth pairs for tests, and runs code inside
// them. Everything it makes is removed when the test ends.
package nettest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NetNS is a network namespace pinned by a bind mount at Path.
type NetNS struct {
	Path string
}

// New makes a network namespace, pinned at a file in a temporary directory, with its
// loopback up; it is unmounted when the test ends.
func New(t testing.TB) *NetNS {
	t.Helper()
	path := filepath.Join(t.TempDir(), "netns")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
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
			if lo, lerr := netlink.LinkByName("lo"); lerr == nil {
				err = netlink.LinkSetUp(lo)
			} else {
				err = lerr
			}
		}
		if rerr := netns.Set(orig); rerr != nil {
			errc <- errors.Join(err, rerr) // the thread stays locked and ends with the goroutine
			return
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	if err := <-errc; err != nil {
		_ = unix.Unmount(path, unix.MNT_DETACH)
		t.Fatalf("make network namespace: %v", err)
	}
	ns := &NetNS{Path: path}
	t.Cleanup(func() {
		if err := unix.Unmount(path, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount netns %s: %v", path, err)
		}
	})
	return ns
}

// Do runs fn on a thread inside the namespace.
func (n *NetNS) Do(fn func() error) error {
	h, err := netns.GetFromPath(n.Path)
	if err != nil {
		return err
	}
	defer h.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(h); err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		err = fn()
		if rerr := netns.Set(orig); rerr != nil {
			errc <- errors.Join(err, rerr)
			return
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	return <-errc
}

// Handle is a netlink handle in the namespace, closed when the test ends.
func (n *NetNS) Handle(t testing.TB) *netlink.Handle {
	t.Helper()
	ns, err := netns.GetFromPath(n.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// Veth makes a veth pair: name in a with address addrA, peer in b with addrB (CIDR
// notation), both up.
func Veth(t testing.TB, a *NetNS, name, addrA string, b *NetNS, peer, addrB string) {
	t.Helper()
	fa, err := os.Open(a.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer fa.Close()
	fb, err := os.Open(b.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer fb.Close()
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: name, Namespace: netlink.NsFd(int(fa.Fd()))},
		PeerName:      peer,
		PeerNamespace: netlink.NsFd(int(fb.Fd())),
	}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatalf("add veth %s/%s: %v", name, peer, err)
	}
	for _, side := range []struct {
		ns   *NetNS
		name string
		addr string
	}{{a, name, addrA}, {b, peer, addrB}} {
		h := side.ns.Handle(t)
		l, err := h.LinkByName(side.name)
		if err != nil {
			t.Fatal(err)
		}
		if side.addr != "" {
			ad, err := netlink.ParseAddr(side.addr)
			if err != nil {
				t.Fatal(err)
			}
			if err := h.AddrAdd(l, ad); err != nil {
				t.Fatalf("address %s on %s: %v", side.addr, side.name, err)
			}
		}
		if err := h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
}

// Snapshot lists the namespace's links as "name type" and its qdiscs and filters, for
// before/after comparisons.
func (n *NetNS) Snapshot(t testing.TB) []string {
	t.Helper()
	h := n.Handle(t)
	links, err := h.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range links {
		a := l.Attrs()
		out = append(out, fmt.Sprintf("link %s %s %s mtu=%d", a.Name, l.Type(), a.HardwareAddr, a.MTU))
		qs, err := h.QdiscList(l)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range qs {
			if q.Type() == "noqueue" || q.Type() == "noop" {
				continue
			}
			out = append(out, fmt.Sprintf("qdisc %s %s", a.Name, q.Type()))
		}
		for _, parent := range []uint32{netlink.HANDLE_ROOT, netlink.MakeHandle(0xffff, 0)} {
			fs, err := h.FilterList(l, parent)
			if err != nil {
				continue
			}
			for _, f := range fs {
				out = append(out, fmt.Sprintf("filter %s %s", a.Name, f.Type()))
			}
		}
		addrs, err := h.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			t.Fatal(err)
		}
		for _, ad := range addrs {
			if ad.IP.IsLinkLocalUnicast() {
				continue // the kernel adds it when the carrier comes up, at its own time
			}
			out = append(out, fmt.Sprintf("addr %s %s", a.Name, ad.IPNet))
		}
	}
	return out
}

// MAC of the named link in the namespace.
func (n *NetNS) MAC(t testing.TB, name string) net.HardwareAddr {
	t.Helper()
	l, err := n.Handle(t).LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().HardwareAddr
}
