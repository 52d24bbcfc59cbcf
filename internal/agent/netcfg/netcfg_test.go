//go:build linux

package netcfg

import (
	"net"
	"testing"

	"github.com/containerd/errdefs"

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
			r, err := toNetlinkRoute(tc.in)
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
