package oci

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/vessel-containers/vessel/internal/agentclient"
	"github.com/vessel-containers/vessel/internal/config"
)

// hostSpec is a pod container's spec with everything GuestSpec changes.
func hostSpec() *specs.Spec {
	s := minimalSpec()
	s.Annotations = map[string]string{AnnotationContainerdType: "container", AnnotationContainerdSandboxID: "pod1"}
	s.Root.Readonly = true
	s.Hooks = &specs.Hooks{
		CreateRuntime:  []specs.Hook{{Path: "/usr/bin/hook"}},
		StartContainer: []specs.Hook{{Path: "/bin/sh", Args: []string{"sh", "-c", "true"}}},
		Poststop:       []specs.Hook{{Path: "/usr/bin/hook"}},
	}
	s.Mounts = []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc"},
		{Destination: "/data/", Type: "bind", Source: "volumes/data", Options: []string{"rbind", "ro"}},
	}
	s.Linux = &specs.Linux{
		CgroupsPath: "/kubepods/pod1/c1",
		Namespaces: []specs.LinuxNamespace{
			{Type: specs.PIDNamespace, Path: "/proc/42/ns/pid"},
			{Type: specs.NetworkNamespace, Path: "/var/run/netns/cni-1"},
			{Type: specs.MountNamespace},
			{Type: specs.IPCNamespace, Path: "/proc/42/ns/ipc"},
		},
		Seccomp: &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActAllow}}},
	}
	return s
}

func TestGuestSpec(t *testing.T) {
	for _, tc := range []struct {
		name        string
		disable     bool
		wantSeccomp bool
	}{
		{"disable_guest_seccomp drops the profile", true, false},
		{"guest applies the profile", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := hostSpec()
			o := opts
			o.SandboxNamespaces = SandboxNamespacePaths(42, nil)
			c, err := ContainerConfig(context.Background(), "c1", bundle, spec, o)
			if err != nil {
				t.Fatal(err)
			}
			cfg := config.Default()
			cfg.Runtime.DisableGuestSeccomp = tc.disable
			g, err := GuestSpec(c, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if got := g.Linux.Seccomp != nil; got != tc.wantSeccomp {
				t.Errorf("guest seccomp present = %v, want %v", got, tc.wantSeccomp)
			}
			if tc.wantSeccomp && !reflect.DeepEqual(g.Linux.Seccomp, spec.Linux.Seccomp) {
				t.Errorf("guest seccomp = %+v, want the spec's %+v", g.Linux.Seccomp, spec.Linux.Seccomp)
			}
			if want := (&specs.Hooks{StartContainer: spec.Hooks.StartContainer}); !reflect.DeepEqual(g.Hooks, want) {
				t.Errorf("hooks = %+v, want only the startContainer ones %+v", g.Hooks, want)
			}
			if g.Linux.CgroupsPath != "/kubepods/pod1/c1" {
				t.Errorf("cgroupsPath = %q, want the spec's /kubepods/pod1/c1", g.Linux.CgroupsPath)
			}
			wantNS := []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}, {Type: specs.IPCNamespace}}
			if !reflect.DeepEqual(g.Linux.Namespaces, wantNS) {
				t.Errorf("namespaces = %+v, want %+v", g.Linux.Namespaces, wantNS)
			}
			if want := (&specs.Root{Path: bundle + "/rootfs", Readonly: true}); !reflect.DeepEqual(g.Root, want) {
				t.Errorf("root = %+v, want %+v", g.Root, want)
			}
			if got, want := g.Mounts[1], (specs.Mount{Destination: "/data", Type: "bind", Source: bundle + "/volumes/data", Options: []string{"rbind", "ro"}}); !reflect.DeepEqual(got, want) {
				t.Errorf("bind mount = %+v, want %+v (the plan's, source resolved)", got, want)
			}
			if !c.JoinSandboxPidNS {
				t.Error("JoinSandboxPidNS = false for a spec with the sandbox's pid namespace path")
			}
			if want := []specs.LinuxNamespaceType{specs.PIDNamespace, specs.IPCNamespace}; !reflect.DeepEqual(c.SandboxNamespaces, want) {
				t.Errorf("SandboxNamespaces = %v, want %v", c.SandboxNamespaces, want)
			}
			// The plan's spec is the spec as given.
			if !reflect.DeepEqual(spec, hostSpec()) {
				t.Errorf("GuestSpec modified the spec: %+v", spec)
			}
			g.Mounts[1].Options[0] = "changed"
			if c.Mounts[1].Options[0] != "rbind" {
				t.Error("guest spec shares mount options with the plan")
			}
		})
	}
}

func TestGuestSpecNeedsPlanAndConfig(t *testing.T) {
	c, err := ContainerConfig(context.Background(), "c1", bundle, minimalSpec(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := GuestSpec(c, nil); err == nil {
		t.Error("GuestSpec without a configuration succeeded")
	}
	if _, err := GuestSpec(nil, config.Default()); err == nil {
		t.Error("GuestSpec without a plan succeeded")
	}
	g, err := GuestSpec(c, config.Default())
	if err != nil {
		t.Fatal(err)
	}
	if g.Linux != nil || c.JoinSandboxPidNS {
		t.Errorf("spec without linux: guest linux %+v, join pid ns %v", g.Linux, c.JoinSandboxPidNS)
	}
}

func TestAgentPlan(t *testing.T) {
	cfg := config.Default()
	cfg.Agent.KernelModules = []string{"nf_tables", "  br_netfilter  debug=1 mode=fast "}
	cfg.Agent.DialTimeout = 3
	cfg.Agent.RequestTimeout = 7
	cfg.Agent.CreateContainerTimeout = 11
	got, err := agentPlan(cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := Agent{
		KernelModules: []KernelModule{{Name: "nf_tables", Params: []string{}}, {Name: "br_netfilter", Params: []string{"debug=1", "mode=fast"}}},
		Timeouts:      agentclient.Timeouts{Ready: 3 * time.Second, Request: 7 * time.Second, Create: 11 * time.Second},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("agentPlan = %+v, want %+v", got, want)
	}

	// Zero timeouts stay zero: the agent client reads them as its defaults.
	cfg.Agent.DialTimeout, cfg.Agent.RequestTimeout, cfg.Agent.CreateContainerTimeout = 0, 0, 0
	if got, _ := agentPlan(cfg); got.Timeouts != (agentclient.Timeouts{}) {
		t.Fatalf("timeouts of 0 = %+v, want zero (client defaults)", got.Timeouts)
	}
}

// agent.policy_file is read and parsed into the plan; a missing or malformed file fails
// the plan naming the key and the file.
func TestAgentPlanPolicy(t *testing.T) {
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good.toml"), filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(good, []byte(`deny = ["ExecProcess"]`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte(`deny = ["Exec"]`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Agent.PolicyFile = good
	got, err := agentPlan(cfg)
	if err != nil || string(got.Policy) != `deny = ["ExecProcess"]` {
		t.Fatalf("policy plan = %q, %v", got.Policy, err)
	}
	for _, f := range []string{bad, filepath.Join(dir, "missing.toml")} {
		cfg.Agent.PolicyFile = f
		if _, err := agentPlan(cfg); err == nil || !strings.Contains(err.Error(), "agent.policy_file") {
			t.Errorf("policy file %s: %v, want an error naming agent.policy_file", f, err)
		}
	}
}

func TestSandboxPlanCarriesAgent(t *testing.T) {
	cfg := testConfig(false)
	cfg.Agent.DialTimeout = 3
	cfg.Agent.KernelModules = []string{"vsock"}
	sb, err := SandboxConfig(context.Background(), "c1", bundle, minimalSpec(), cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	if sb.Agent.Timeouts.Ready != 3*time.Second || len(sb.Agent.KernelModules) != 1 || sb.Agent.KernelModules[0].Name != "vsock" {
		t.Fatalf("plan's agent part = %+v, want dial 3s and module vsock", sb.Agent)
	}
}

func TestIsBind(t *testing.T) {
	for _, tc := range []struct {
		m    specs.Mount
		want bool
	}{
		{specs.Mount{Type: "bind"}, true},
		{specs.Mount{Type: "none", Options: []string{"rbind", "ro"}}, true},
		{specs.Mount{Type: "none", Options: []string{"bind"}}, true},
		{specs.Mount{Type: "tmpfs", Options: []string{"nosuid"}}, false},
		{specs.Mount{Type: "proc"}, false},
	} {
		if got := IsBind(tc.m); got != tc.want {
			t.Errorf("IsBind(%+v) = %v, want %v", tc.m, got, tc.want)
		}
	}
}

func TestIsGuestKernelBind(t *testing.T) {
	for _, tc := range []struct {
		m    specs.Mount
		want bool
	}{
		{specs.Mount{Destination: "/proc", Type: "none", Source: "/proc", Options: []string{"rbind", "nosuid"}}, true},
		{specs.Mount{Destination: "/proc", Type: "bind", Source: "/proc/"}, true},
		{specs.Mount{Destination: "/sys", Type: "bind", Source: "/sys"}, true},
		{specs.Mount{Destination: "/sys/fs/cgroup", Source: "/sys/fs/cgroup", Options: []string{"rbind", "ro"}}, true},
		// Host processes' files are the host's.
		{specs.Mount{Destination: "/run/netns/x", Type: "bind", Source: "/proc/42/ns/net"}, false},
		{specs.Mount{Destination: "/proc", Type: "proc", Source: "proc"}, false},
		{specs.Mount{Destination: "/data", Type: "bind", Source: "/system"}, false},
		{specs.Mount{Destination: "/data", Type: "bind", Source: "/srv/proc"}, false},
	} {
		if got := IsGuestKernelBind(tc.m); got != tc.want {
			t.Errorf("IsGuestKernelBind(%+v) = %v, want %v", tc.m, got, tc.want)
		}
	}
}
