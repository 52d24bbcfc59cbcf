package oci

import (
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/vessel-containers/vessel/internal/config"
	"github.com/vessel-containers/vessel/internal/network"
)

func TestNetworkPlan(t *testing.T) {
	withNS := func(path string) *specs.Spec {
		return &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{
			{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace, Path: path},
		}}}
	}
	for _, tc := range []struct {
		name    string
		mod     func(c *config.Config)
		spec    *specs.Spec
		want    network.Config
		wantErr string
	}{
		{"default", nil, withNS("/run/netns/cni-1"), network.Config{NetNS: "/run/netns/cni-1", Model: network.ModelTCFilter, VhostNet: true}, ""},
		{"new netns", nil, withNS(""), network.Config{Model: network.ModelTCFilter, VhostNet: true, NewNetNS: true}, ""},
		{"new netns with none", func(c *config.Config) { c.Runtime.InternetworkingModel = "none" }, withNS(""), network.Config{Model: network.ModelNone, VhostNet: true}, ""},
		{"no linux", nil, &specs.Spec{}, network.Config{Model: network.ModelTCFilter, VhostNet: true}, ""},
		{"no vhost", func(c *config.Config) { c.Hypervisor.DisableVhostNet = true }, withNS("/n"), network.Config{NetNS: "/n", Model: network.ModelTCFilter}, ""},
		{"none", func(c *config.Config) { c.Runtime.InternetworkingModel = "none" }, withNS("/n"), network.Config{NetNS: "/n", Model: network.ModelNone, VhostNet: true}, ""},
		{"disable new netns", func(c *config.Config) {
			c.Runtime.InternetworkingModel = "none"
			c.Runtime.DisableNewNetNS = true
		}, withNS("/n"), network.Config{Model: network.ModelNone}, ""},
		{"disable new netns with tcfilter", func(c *config.Config) { c.Runtime.DisableNewNetNS = true }, withNS("/n"), network.Config{}, "runtime.disable_new_netns needs"},
		{"macvtap", func(c *config.Config) { c.Runtime.InternetworkingModel = "macvtap" }, withNS("/n"), network.Config{NetNS: "/n", Model: network.ModelMacvtap, VhostNet: true}, ""},
		{"unknown model", func(c *config.Config) { c.Runtime.InternetworkingModel = "bridged" }, withNS("/n"), network.Config{}, "runtime.internetworking_model \"bridged\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := config.Default()
			if tc.mod != nil {
				tc.mod(c)
			}
			got, err := networkPlan(c, tc.spec)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}
