//go:build linux

package netcfg

import (
	"errors"
	"net"
	"os"
	"runtime"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
)

func TestToNetlinkRoute(t *testing.T) {
	for _, tc := range []struct {
		name     string
		in       *agentv1.Route
		dst, gw  string
		src      string
		badInput bool
	}{
		{"default via gateway", &agentv1.Route{Dest: "default", Gateway: "10.0.0.1"}, "", "10.0.0.1", "", false},
		{"empty dest is default", &agentv1.Route{Gateway: "fe80::1"}, "", "fe80::1", "", false},
		{"prefix with source", &agentv1.Route{Dest: "10.1.0.0/16", Source: "10.1.0.5", Scope: 253}, "10.1.0.0/16", "", "10.1.0.5", false},
		{"host route v4", &agentv1.Route{Dest: "192.168.1.7"}, "192.168.1.7/32", "", "", false},
		{"host route v6", &agentv1.Route{Dest: "2001:db8::1"}, "2001:db8::1/128", "", "", false},
		{"bad dest", &agentv1.Route{Dest: "10.0.0.0/99"}, "", "", "", true},
		{"bad gateway", &agentv1.Route{Gateway: "router"}, "", "", "", true},
		{"nil", nil, "", "", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := toNetlinkRoute(nil, tc.in)
			if tc.badInput {
				if !errdefs.IsInvalidArgument(err) {
					t.Fatalf("err = %v, want invalid argument", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := ipnetString(r.Dst); got != tc.dst {
				t.Errorf("dst = %q, want %q", got, tc.dst)
			}
			if got := ipString(r.Gw); got != tc.gw {
				t.Errorf("gw = %q, want %q", got, tc.gw)
			}
			if got := ipString(r.Src); got != tc.src {
				t.Errorf("src = %q, want %q", got, tc.src)
			}
			if uint32(r.Scope) != tc.in.GetScope() {
				t.Errorf("scope = %d", r.Scope)
			}
		})
	}
}

func ipnetString(n *net.IPNet) string {
	if n == nil {
		return ""
	}
	return n.String()
}

func ipString(ip net.IP) string {
	if ip == nil {
		return ""
	}
	return ip.String()
}

// TestLinkUp brings the loopback of a fresh network namespace up.
func TestLinkUp(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace")
	}
	errc := make(chan error, 1)
	go func() {
		// The namespace belongs to this thread only, which exits with the goroutine.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		if err := LinkUp("lo"); err != nil {
			errc <- err
			return
		}
		if err := LinkUp("lo"); err != nil { // already up: no error
			errc <- err
			return
		}
		l, err := netlink.LinkByName("lo")
		if err == nil && l.Attrs().Flags&net.FlagUp == 0 {
			err = errors.New("lo is still down")
		}
		errc <- err
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if err := LinkUp("no-such-link0"); err == nil {
		t.Error("a missing link came up")
	}
}
