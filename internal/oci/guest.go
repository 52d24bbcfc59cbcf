package oci

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/vessel-containers/vessel/internal/config"
)

// GuestSpec is the container's spec as the guest agent gets it, still with host paths: the
// caller shares the root file system (Root.Path, the plan's Rootfs) and every bind mount's
// source (IsBind) but the kernel's own file systems (IsGuestKernelBind, which the guest
// binds from its own) with the guest and replaces those paths by their guest paths. It is the
// only place the guest spec is derived from a container plan; cfg is the sandbox's
// effective configuration.
//
// Compared with the spec as given:
//   - root and mounts are the plan's: the rootfs and relative bind sources resolved against
//     the bundle, destinations cleaned; a memory volume (Container.MemoryVolumes) is
//     already a bind of its guest path (MemoryVolume.GuestPath), which the caller neither
//     shares nor rewrites: the guest mounts the volume's file system there;
//   - hooks are dropped but startContainer: the others run on the host; startContainer
//     hooks run in the container as the spec asks (their path resolves in the container),
//     started by the container's init in the guest just before it executes the process,
//     under its user, capabilities and seccomp filter, as runc runs them;
//   - linux.cgroupsPath becomes the container's cgroup path in the guest (GuestCgroupPath),
//     where runc would put it on a host; without one the agent names the cgroup;
//   - namespace paths are dropped: they name host namespaces. ContainerConfig accepted only
//     the pod sandbox's own ipc, uts and pid namespaces; the container joins the sandbox
//     container's in the guest instead (Container.SandboxNamespaces).
//     The network namespace is dropped altogether: the agent puts every container of the pod
//     into the pod's network namespace in the guest, which holds the pod's NICs (as the
//     containers of a pod share the pause container's on the host), and applies the
//     containers' net.* sysctls there;
//   - linux.seccomp is dropped when runtime.disable_guest_seccomp is set: the VM is then the
//     only boundary, and the guest does not filter system calls. Otherwise the guest applies
//     the profile.
func GuestSpec(c *Container, cfg *config.Config) (*specs.Spec, error) {
	if c == nil || c.Spec == nil {
		return nil, errors.New("guest spec: no container plan")
	}
	if cfg == nil {
		return nil, fmt.Errorf("guest spec of container %s: no configuration", c.ID)
	}
	data, err := json.Marshal(c.Spec)
	if err != nil {
		return nil, fmt.Errorf("guest spec of container %s: copy spec: %w", c.ID, err)
	}
	var g specs.Spec
	if err := json.Unmarshal(data, &g); err != nil {
		return nil, fmt.Errorf("guest spec of container %s: copy spec: %w", c.ID, err)
	}
	g.Root = &specs.Root{Path: c.Rootfs, Readonly: c.RootfsReadonly}
	g.Mounts = make([]specs.Mount, len(c.Mounts))
	for i, m := range c.Mounts {
		m.Options = slices.Clone(m.Options)
		if v, ok := c.MemoryVolume(i); ok {
			m = guestMemoryMount(m, v)
		}
		g.Mounts[i] = m
	}
	if g.Hooks != nil && len(g.Hooks.StartContainer) > 0 {
		g.Hooks = &specs.Hooks{StartContainer: g.Hooks.StartContainer}
	} else {
		g.Hooks = nil
	}
	if g.Linux != nil {
		if g.Linux.CgroupsPath, err = GuestCgroupPath(g.Linux.CgroupsPath); err != nil {
			return nil, fmt.Errorf("guest spec of container %s: %w", c.ID, err)
		}
		ns := g.Linux.Namespaces[:0]
		for _, n := range g.Linux.Namespaces {
			if n.Type == specs.NetworkNamespace {
				continue
			}
			n.Path = ""
			ns = append(ns, n)
		}
		g.Linux.Namespaces = ns
		if cfg.Runtime.DisableGuestSeccomp {
			g.Linux.Seccomp = nil
		}
	}
	return &g, nil
}
