package oci

import (
	"fmt"
	"slices"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// sandboxJoinable are the namespace types a pod container may join by path when the path is
// the pod sandbox's own: in the guest it joins the sandbox container's namespace of that type.
var sandboxJoinable = []specs.LinuxNamespaceType{specs.IPCNamespace, specs.UTSNamespace, specs.PIDNamespace}

// SandboxNamespacePaths are the host paths that stand for a pod sandbox's namespaces: those
// of the sandbox task's process on the host (/proc/<taskPid>/ns/<type>, what containerd's
// CRI and podman derive from the sandbox's pid) and the paths in the sandbox container's own
// spec. A pod container's spec naming one of them joins the sandbox's namespace in the guest
// (ContainerConfig, Options.SandboxNamespaces).
func SandboxNamespacePaths(taskPid int, sandboxSpec *specs.Spec) map[specs.LinuxNamespaceType][]string {
	out := make(map[specs.LinuxNamespaceType][]string)
	if taskPid > 0 {
		for _, t := range sandboxJoinable {
			out[t] = append(out[t], "/proc/"+strconv.Itoa(taskPid)+"/ns/"+procNSName(t))
		}
	}
	if sandboxSpec != nil && sandboxSpec.Linux != nil {
		for _, ns := range sandboxSpec.Linux.Namespaces {
			if ns.Path != "" && !slices.Contains(out[ns.Type], ns.Path) {
				out[ns.Type] = append(out[ns.Type], ns.Path)
			}
		}
	}
	return out
}

// procNSName is the name of a namespace type under /proc/<pid>/ns.
func procNSName(t specs.LinuxNamespaceType) string {
	switch t {
	case specs.NetworkNamespace:
		return "net"
	case specs.MountNamespace:
		return "mnt"
	default:
		return string(t)
	}
}

// namespacesOf checks the spec's namespaces and returns the types a pod container joins
// from its sandbox. A namespace path names a namespace of the host; inside the VM it means
// nothing, so it is accepted only where it stands for the pod sandbox's own namespace (a pod
// container's ipc, uts or pid path among sandboxPaths) and refused otherwise. A pod sandbox
// without a network, ipc or pid namespace is a host-network, host-IPC or host-PID pod: the
// VM has no access to the host's, and there is no VM-less fallback. The network namespace's
// path is not looked at here: the VM is the pod's network boundary (GuestSpec).
func namespacesOf(kind Kind, spec *specs.Spec, sandboxPaths map[specs.LinuxNamespaceType][]string) ([]specs.LinuxNamespaceType, error) {
	var list []specs.LinuxNamespace
	if spec.Linux != nil {
		list = spec.Linux.Namespaces
	}
	if kind == KindPodSandbox {
		for _, t := range []specs.LinuxNamespaceType{specs.NetworkNamespace, specs.IPCNamespace, specs.PIDNamespace} {
			if !slices.ContainsFunc(list, func(ns specs.LinuxNamespace) bool { return ns.Type == t }) {
				return nil, fmt.Errorf("linux.namespaces: the pod sandbox has no %s namespace: a host-%s pod shares the host's %s namespace, which a pod in a VM cannot reach (Vessel has no VM-less fallback)",
					t, hostPodWord(t), t)
			}
		}
	}
	var joins []specs.LinuxNamespaceType
	for i, ns := range list {
		if ns.Path == "" || ns.Type == specs.NetworkNamespace {
			continue
		}
		if slices.Contains(joins, ns.Type) {
			return nil, fmt.Errorf("linux.namespaces[%d]: a second %s namespace", i, ns.Type)
		}
		if kind == KindPodContainer && slices.Contains(sandboxJoinable, ns.Type) && slices.Contains(sandboxPaths[ns.Type], ns.Path) {
			joins = append(joins, ns.Type)
			continue
		}
		why := "it is not the pod sandbox's"
		switch {
		case kind != KindPodContainer:
			why = fmt.Sprintf("a %s container has no pod sandbox whose namespace it could be", kind)
		case !slices.Contains(sandboxJoinable, ns.Type):
			why = fmt.Sprintf("only the pod sandbox's %s namespaces can be joined", joinableWords())
		}
		return nil, fmt.Errorf("linux.namespaces[%d] (%s) path %q: a host namespace means nothing inside the VM, refused (%s)", i, ns.Type, ns.Path, why)
	}
	return joins, nil
}

func hostPodWord(t specs.LinuxNamespaceType) string {
	switch t {
	case specs.NetworkNamespace:
		return "network"
	case specs.IPCNamespace:
		return "IPC"
	default:
		return "PID"
	}
}

func joinableWords() string {
	s := ""
	for i, t := range sandboxJoinable {
		switch {
		case i == 0:
		case i == len(sandboxJoinable)-1:
			s += " and "
		default:
			s += ", "
		}
		s += string(t)
	}
	return s
}
