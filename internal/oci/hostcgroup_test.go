package oci

import (
	"context"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/vessel-containers/vessel/internal/config"
	"github.com/vessel-containers/vessel/internal/hostcgroup"
)

func TestHostCgroupPlan(t *testing.T) {
	withPath := func(p string) *specs.Spec { return &specs.Spec{Linux: &specs.Linux{CgroupsPath: p}} }
	for _, tc := range []struct {
		name     string
		only     bool
		systemd  bool
		rootless bool
		spec     *specs.Spec
		want     hostcgroup.Config
		wantErr  string
	}{
		{"no linux", false, false, false, &specs.Spec{}, hostcgroup.Config{Path: "/sb1"}, ""},
		{"no path", true, false, false, withPath(""), hostcgroup.Config{Path: "/sb1", SandboxOnly: true}, ""},
		{"no path, systemd", false, true, false, withPath(""), hostcgroup.Config{Path: "system.slice:vessel:sb1"}, ""},
		{"no path, rootless", false, false, true, withPath(""), hostcgroup.Config{}, ""},
		{"cgroupfs", false, false, false, withPath("/default/c1"), hostcgroup.Config{Path: "/default/c1"}, ""},
		{"systemd form, sandbox only", true, false, false, withPath("system.slice:vessel:c1"), hostcgroup.Config{Path: "system.slice:vessel:c1", SandboxOnly: true}, ""},
		{"root", false, false, false, withPath("/"), hostcgroup.Config{}, "root cgroup"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := config.Default()
			c.Runtime.SandboxCgroupOnly = tc.only
			c.Hypervisor.Rootless = tc.rootless
			got, err := hostCgroupPlan(c, tc.spec, "sb1", tc.systemd)
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

// The sandbox_cgroup_only annotation reaches the plan, and a bad cgroupsPath fails the
// sandbox's plan naming the path.
func TestSandboxConfigHostCgroup(t *testing.T) {
	bundle := t.TempDir()
	spec := minimalSpec()
	spec.Linux = &specs.Linux{CgroupsPath: "/default/c1"}
	spec.Annotations = map[string]string{config.PrefixVessel + "runtime.sandbox_cgroup_only": "true"}
	cfg := config.Default()
	cfg.Runtime.EnableAnnotations = []string{`runtime\.sandbox_cgroup_only`}
	sb, err := SandboxConfig(context.Background(), "c1", bundle, spec, cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if want := (hostcgroup.Config{Path: "/default/c1", SandboxOnly: true}); sb.HostCgroup != want {
		t.Fatalf("host cgroup plan %+v, want %+v", sb.HostCgroup, want)
	}
	spec.Linux.CgroupsPath = "/.."
	if _, err := SandboxConfig(context.Background(), "c1", bundle, spec, cfg, Options{}); err == nil || !strings.Contains(err.Error(), `cgroupsPath "/.."`) {
		t.Fatalf("bad cgroupsPath: %v", err)
	}
}
