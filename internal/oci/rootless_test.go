package oci

import (
	"context"
	"strings"
	"testing"

	"github.com/containerd/cgroups/v3"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/vessel-containers/vessel/internal/config"
	"github.com/vessel-containers/vessel/internal/hostcgroup"
	"github.com/vessel-containers/vessel/internal/hypervisor"
)

// TestRootlessPlan runs SandboxConfig in rootless mode (Options.Rootless, as the shim sets it
// when it runs without real root, and hypervisor.rootless): what needs root on the host is
// refused naming its key, and vmm_id_range is left out of the plan.
func TestRootlessPlan(t *testing.T) {
	cgroupErr := "this host runs cgroup v1 (or hybrid)"
	if cgroups.Mode() == cgroups.Unified {
		cgroupErr = "" // root may write any cgroup: the delegation check passes
	}
	for _, tc := range []struct {
		name     string
		key      bool // hypervisor.rootless instead of Options.Rootless
		edit     func(*config.Config)
		cgroup   string
		wantErr  string
		wantJail bool
	}{
		{name: "defaults"},
		{name: "by the key", key: true},
		{name: "virtio-fs", edit: func(c *config.Config) { c.Hypervisor.SharedFS = hypervisor.SharedFSVirtioFS },
			wantErr: `hypervisor.shared_fs = "virtio-fs" cannot be used rootless`},
		{name: "templates", edit: func(c *config.Config) { c.Factory.EnableTemplate = true },
			wantErr: "factory.enable_template = true cannot be used rootless"},
		{name: "vm cache", edit: func(c *config.Config) { c.Factory.VMCacheNumber = 2 },
			wantErr: "factory.vm_cache_number = 2 cannot be used rootless"},
		{name: "vmm id range ignored", edit: func(c *config.Config) { c.Hypervisor.VMMIDRange = "100000-165535" }},
		{name: "systemd cgroup", cgroup: "user.slice:vessel:c1", wantErr: map[bool]string{
			true: "rootless: the systemd cgroup driver", false: cgroupErr}[hostcgroup.SystemdRunning()]},
		{name: "cgroupfs cgroup", cgroup: "/vessel/c1", wantErr: cgroupErr},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := minimalSpec()
			if tc.cgroup != "" {
				spec.Linux = &specs.Linux{CgroupsPath: tc.cgroup}
			}
			cfg := config.Default()
			if tc.edit != nil {
				tc.edit(cfg)
			}
			cfg.Hypervisor.Rootless = tc.key
			sb, err := SandboxConfig(context.Background(), "c1", t.TempDir(), spec, cfg, Options{Rootless: !tc.key})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if sb.VMMIDs != nil {
				t.Errorf("rootless plan has VMM ids %v, want none", sb.VMMIDs)
			}
		})
	}
	// Without rootless mode vmm_id_range stays.
	cfg := config.Default()
	cfg.Hypervisor.VMMIDRange = "100000-165535"
	if err := rootlessPlan(context.Background(), cfg, hostcgroup.Config{}); err != nil || cfg.Hypervisor.VMMIDRange == "" {
		t.Errorf("not rootless: %v, vmm_id_range %q", err, cfg.Hypervisor.VMMIDRange)
	}
}
