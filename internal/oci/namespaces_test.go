package oci

import (
	"context"
	"reflect"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// podSandboxNamespaces are the namespaces containerd's CRI gives a pod's sandbox container.
func podSandboxNamespaces() []specs.LinuxNamespace {
	return []specs.LinuxNamespace{
		{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace},
		{Type: specs.MountNamespace}, {Type: specs.NetworkNamespace, Path: "/var/run/netns/cni-1"},
	}
}

func TestSandboxNamespacePaths(t *testing.T) {
	sb := minimalSpec()
	sb.Linux = &specs.Linux{Namespaces: podSandboxNamespaces()}
	got := SandboxNamespacePaths(42, sb)
	want := map[specs.LinuxNamespaceType][]string{
		specs.IPCNamespace:     {"/proc/42/ns/ipc"},
		specs.UTSNamespace:     {"/proc/42/ns/uts"},
		specs.PIDNamespace:     {"/proc/42/ns/pid"},
		specs.NetworkNamespace: {"/var/run/netns/cni-1"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("SandboxNamespacePaths = %v, want %v", got, want)
	}
}

func TestNamespacesByPath(t *testing.T) {
	podContainer := map[string]string{AnnotationContainerdType: "container", AnnotationContainerdSandboxID: "pod1"}
	podSandbox := map[string]string{AnnotationContainerdType: "sandbox", AnnotationContainerdSandboxID: "pod1"}
	without := func(t specs.LinuxNamespaceType) []specs.LinuxNamespace {
		var out []specs.LinuxNamespace
		for _, ns := range podSandboxNamespaces() {
			if ns.Type != t {
				out = append(out, ns)
			}
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		ann     map[string]string
		ns      []specs.LinuxNamespace
		want    []specs.LinuxNamespaceType
		wantErr string
	}{
		{name: "CRI pod container shares ipc, uts and pid", ann: podContainer, ns: []specs.LinuxNamespace{
			{Type: specs.NetworkNamespace, Path: "/proc/42/ns/net"}, {Type: specs.IPCNamespace, Path: "/proc/42/ns/ipc"},
			{Type: specs.UTSNamespace, Path: "/proc/42/ns/uts"}, {Type: specs.PIDNamespace, Path: "/proc/42/ns/pid"},
			{Type: specs.MountNamespace},
		}, want: []specs.LinuxNamespaceType{specs.IPCNamespace, specs.UTSNamespace, specs.PIDNamespace}},
		{name: "CRI pod container with its own pid namespace", ann: podContainer, ns: []specs.LinuxNamespace{
			{Type: specs.IPCNamespace, Path: "/proc/42/ns/ipc"}, {Type: specs.PIDNamespace},
		}, want: []specs.LinuxNamespaceType{specs.IPCNamespace}},
		{name: "another process's namespace", ann: podContainer, ns: []specs.LinuxNamespace{
			{Type: specs.IPCNamespace, Path: "/proc/1/ns/ipc"},
		}, wantErr: `linux.namespaces[0] (ipc) path "/proc/1/ns/ipc": a host namespace means nothing inside the VM`},
		{name: "sandbox path of the wrong type", ann: podContainer, ns: []specs.LinuxNamespace{
			{Type: specs.UTSNamespace, Path: "/proc/42/ns/ipc"},
		}, wantErr: "not the pod sandbox's"},
		{name: "sandbox's mount namespace", ann: podContainer, ns: []specs.LinuxNamespace{
			{Type: specs.MountNamespace, Path: "/proc/42/ns/mnt"},
		}, wantErr: "only the pod sandbox's ipc, uts and pid namespaces can be joined"},
		{name: "single container joins a path", ann: nil, ns: []specs.LinuxNamespace{
			{Type: specs.IPCNamespace, Path: "/proc/42/ns/ipc"},
		}, wantErr: "a single_container container has no pod sandbox"},
		{name: "single container with a netns path", ann: nil, ns: []specs.LinuxNamespace{
			{Type: specs.NetworkNamespace, Path: "/var/run/netns/x"},
		}},
		{name: "pod sandbox", ann: podSandbox, ns: podSandboxNamespaces()},
		{name: "host network pod", ann: podSandbox, ns: without(specs.NetworkNamespace), wantErr: "no network namespace: a host-network pod"},
		{name: "host IPC pod", ann: podSandbox, ns: without(specs.IPCNamespace), wantErr: "no ipc namespace: a host-IPC pod"},
		{name: "host PID pod", ann: podSandbox, ns: without(specs.PIDNamespace), wantErr: "no pid namespace: a host-PID pod"},
		{name: "pod sandbox joining a path", ann: podSandbox, ns: append(without(specs.IPCNamespace), specs.LinuxNamespace{Type: specs.IPCNamespace, Path: "/proc/7/ns/ipc"}),
			wantErr: "a pod_sandbox container has no pod sandbox"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := minimalSpec()
			spec.Annotations = tc.ann
			spec.Linux = &specs.Linux{Namespaces: tc.ns}
			o := opts
			o.SandboxNamespaces = SandboxNamespacePaths(42, nil)
			c, err := ContainerConfig(context.Background(), "c1", bundle, spec, o)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c.SandboxNamespaces, tc.want) {
				t.Errorf("SandboxNamespaces = %v, want %v", c.SandboxNamespaces, tc.want)
			}
			if got, want := c.JoinSandboxPidNS, contains(fmtTypes(tc.want), "pid"); got != want {
				t.Errorf("JoinSandboxPidNS = %v, want %v", got, want)
			}
			g, err := GuestSpec(c, testConfig(false))
			if err != nil {
				t.Fatal(err)
			}
			for _, ns := range g.Linux.Namespaces {
				if ns.Path != "" || ns.Type == specs.NetworkNamespace {
					t.Errorf("guest spec namespace %+v: want no path and no network namespace", ns)
				}
			}
		})
	}
}

func fmtTypes(ts []specs.LinuxNamespaceType) string {
	var b strings.Builder
	for _, t := range ts {
		b.WriteString(string(t) + " ")
	}
	return b.String()
}
