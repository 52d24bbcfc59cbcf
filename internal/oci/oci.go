// Package oci turns an OCI bundle (the runtime-spec config and the bundle path) plus Vessel's
// configuration into the one plan the shim and the sandbox orchestrator execute. The plan is
// produced and validated once, here, and everything downstream consumes it:
//
//	config.json + configuration.toml + annotations
//	  -> SandboxConfig (a container that boots a VM) / ContainerConfig (a pod container)
//	       Sandbox: effective config, VM sizing and driver config, agent part (agentPlan)
//	       Container: id, kind, sandbox id, rootfs, process, mounts, devices, memory volumes
//	  -> shim: sandbox.Config from the Sandbox plan; sandbox.CreateContainer(Container plan)
//	  -> sandbox: GuestSpec(Container, effective config) -> the agent's CreateContainer
//
// Identify tells what a container is (single, pod sandbox, pod container) and which sandbox
// it belongs to, per the CRI annotations of containerd and CRI-O. Apart from describing
// bind sources' file systems (memory volumes, a bind-mounted /dev/shm among them) and
// looking up the host's devices (Options.MemoryFS and HostDevice, which tests replace),
// everything here is a pure function of its inputs.
package oci

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path"
	"regexp"
	"slices"

	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/vessel-containers/vessel/internal/config"
	"github.com/vessel-containers/vessel/internal/containerid"
	"github.com/vessel-containers/vessel/internal/hostcgroup"
	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/idrange"
	"github.com/vessel-containers/vessel/internal/network"
)

// Options are the host facts a conversion depends on.
type Options struct {
	// Host bounds vCPU and memory sizes and annotations; zero fields bound nothing.
	Host config.Host
	// MemoryFS describes the file system and directory at a bind mount's source (statfs(2)
	// and stat(2) when nil); it finds the memory volumes (MemoryVolumes).
	MemoryFS func(path string) (FSInfo, error)
	// SandboxNamespaces are, for a pod container, the host paths that stand for its pod
	// sandbox's namespaces (SandboxNamespacePaths); the container may join those by path.
	SandboxNamespaces map[specs.LinuxNamespaceType][]string
	// HostDevice reports whether the host has a device (its /sys/dev entry when nil); it
	// sorts the spec's linux.devices.
	HostDevice HostDeviceFunc
	// Rootless is set when the caller runs without real root on the host (rootless.Detect):
	// the sandbox is planned in rootless mode, as with hypervisor.rootless = true.
	Rootless bool
}

// Sandbox is the plan for a VM and the container that creates it.
type Sandbox struct {
	// ID of the sandbox: the CRI sandbox id, or the container id of a single container.
	ID string
	// Config is the effective configuration: the loaded one with the annotations applied.
	Config *config.Config
	// Limits are Config's sizing bounds on this host; ComputeSizing(Limits, ...) resizes.
	Limits config.Limits
	// Sizing is the VM's size at boot. With runtime.static_sandbox_resource_mgmt it already
	// includes the workload (the pod's CRI totals, or the single container's limits) and
	// the maxima equal the boot size; otherwise it is the defaults and the maxima are the
	// limits, leaving room to hot-plug per container.
	Sizing Sizing
	// VM is the driver configuration for Config and Sizing; the caller sets ID, StateDir,
	// SharedDir, ShareTag and VirtioFSSocket.
	VM hypervisor.Config
	// Agent is what the guest agent is told when the sandbox is created (kernel modules,
	// guest hook path) and how long the host waits for it.
	Agent Agent
	// Network is the pod network namespace the VM attaches to, and how (networkPlan).
	Network network.Config
	// HostCgroup is the pod cgroup the sandbox's host processes go into (hostCgroupPlan).
	HostCgroup hostcgroup.Config
	// Container is the container whose creation boots the VM (pause or single container).
	Container *Container
	// VMMIDs, when set, is the pool the sandbox's VMM takes its unprivileged host ids from
	// (vmmIDPool); nil runs the VMM as root.
	VMMIDs *idrange.Pool
}

// vmmIDPool is hypervisor.vmm_id_range: the pool of host ids for unprivileged VMMs, or nil.
func vmmIDPool(c *config.Config) (*idrange.Pool, error) {
	if c.Hypervisor.VMMIDRange == "" {
		return nil, nil
	}
	p, err := idrange.ParsePool(c.Hypervisor.VMMIDRange)
	if err != nil {
		return nil, fmt.Errorf("hypervisor.vmm_id_range: %w", err)
	}
	return &p, nil
}

// Container is the validated plan for one container.
type Container struct {
	ID        string
	SandboxID string
	Kind      Kind
	// Bundle is the absolute bundle directory.
	Bundle string
	// Rootfs is the absolute root file system path (the spec's root.path resolved against
	// the bundle).
	Rootfs string
	// RootfsDisk, when set (by the shim, from RootfsDisks), is the disk holding the root
	// file system: the guest mounts it and Rootfs is not used.
	RootfsDisk *specs.Mount
	// RootfsOverlay, when set (by the shim, from RootfsDisks), is the overlay over disks
	// that the guest builds as the root file system; Rootfs is not used.
	RootfsOverlay  *DiskOverlay
	RootfsReadonly bool
	Hostname       string
	Process        Process
	// JoinSandboxPidNS is set when the spec joins the pod sandbox's pid namespace (a pod
	// sharing its process namespace): in the guest the container joins the sandbox's.
	JoinSandboxPidNS bool
	// SandboxNamespaces are the namespace types (ipc, uts, pid) whose path in the spec is the
	// pod sandbox's: in the guest the container joins the sandbox container's.
	SandboxNamespaces []specs.LinuxNamespaceType
	// Mounts in spec order, destinations cleaned and relative bind sources resolved against
	// the bundle. A disk mount (IsDiskMount) is attached to the VM and mounted in the guest.
	Mounts []specs.Mount
	// Devices of types c, b, u and p only. Block devices (b) are the host's devices with
	// those numbers, attached to the VM as disks, except those in AbsentDevices.
	Devices []specs.LinuxDevice
	// AbsentDevices are the paths of the Devices entries that name no device of the host:
	// the guest makes their nodes as given, as runc makes them on the host, and nothing is
	// attached for them.
	AbsentDevices []string
	// MemoryVolumes are the Mounts whose content lives in memory (memvol.go): the guest
	// mounts a tmpfs or hugetlbfs for each and GuestSpec binds it.
	MemoryVolumes []MemoryVolume
	// Resources are the container's CPU and memory limits for VM sizing.
	Resources   Resources
	Annotations map[string]string
	// Spec is the spec as given; nothing here modifies it. GuestSpec derives the guest's.
	Spec *specs.Spec
}

// reVersion accepts any runtime-spec 1.x version (Debian's crun refuses 1.3.0; we do not).
var reVersion = regexp.MustCompile(`^1\.[0-9]+(\.[0-9]+)?([-+][0-9A-Za-z.+-]*)?$`)

// SandboxConfig plans the VM for a container that creates one (a pod's sandbox container or a
// single container): it converts the container, applies the spec's configuration
// annotations to cfg, and sizes the VM. A pod container is an error: use ContainerConfig.
func SandboxConfig(ctx context.Context, id, bundle string, spec *specs.Spec, cfg *config.Config, opts Options) (*Sandbox, error) {
	if cfg == nil {
		return nil, errors.New("sandbox: no configuration")
	}
	ctr, err := ContainerConfig(ctx, id, bundle, spec, opts)
	if err != nil {
		return nil, err
	}
	if !ctr.Kind.CreatesSandbox() {
		return nil, fmt.Errorf("container %s: a pod container of sandbox %s creates no sandbox", id, ctr.SandboxID)
	}
	eff, err := cfg.WithAnnotations(spec.Annotations, opts.Host)
	if err != nil {
		return nil, fmt.Errorf("sandbox %s: %w", ctr.SandboxID, err)
	}
	eff.Hypervisor.Rootless = eff.Hypervisor.Rootless || opts.Rootless
	limits := eff.Limits(opts.Host)
	var sizing Sizing
	if eff.Runtime.StaticSandboxResourceMgmt {
		w := ctr.Resources
		if ctr.Kind == KindPodSandbox {
			if w, err = SandboxResources(spec.Annotations); err != nil {
				return nil, fmt.Errorf("sandbox %s: %w", ctr.SandboxID, err)
			}
		}
		sizing = ComputeSizing(limits, w)
		sizing.MaxVCPUs, sizing.MaxMemoryMiB = sizing.VCPUs, sizing.MemoryMiB
	} else {
		sizing = ComputeSizing(limits)
	}
	netPlan, err := networkPlan(eff, spec)
	if err != nil {
		return nil, fmt.Errorf("sandbox %s: %w", ctr.SandboxID, err)
	}
	cgPlan, err := hostCgroupPlan(eff, spec, ctr.SandboxID, hostcgroup.SystemdRunning())
	if err != nil {
		return nil, fmt.Errorf("sandbox %s: %w", ctr.SandboxID, err)
	}
	if err := rootlessPlan(ctx, eff, cgPlan); err != nil {
		return nil, fmt.Errorf("sandbox %s: %w", ctr.SandboxID, err)
	}
	agent, err := agentPlan(eff)
	if err != nil {
		return nil, fmt.Errorf("sandbox %s: %w", ctr.SandboxID, err)
	}
	idPool, err := vmmIDPool(eff)
	if err != nil {
		return nil, fmt.Errorf("sandbox %s: %w", ctr.SandboxID, err)
	}
	return &Sandbox{
		VMMIDs:     idPool,
		Network:    netPlan,
		HostCgroup: cgPlan,
		ID:         ctr.SandboxID,
		Config:     eff,
		Limits:     limits,
		Sizing:     sizing,
		VM:         HypervisorConfig(eff, sizing),
		Agent:      agent,
		Container:  ctr,
	}, nil
}

// ContainerConfig validates and converts one container's spec. Configuration annotations
// are not applied here: they take effect only when a sandbox is created.
func ContainerConfig(ctx context.Context, id, bundle string, spec *specs.Spec, opts Options) (*Container, error) {
	c, err := convert(ctx, id, bundle, spec, opts)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", id, err)
	}
	return c, nil
}

func convert(ctx context.Context, id, bundle string, spec *specs.Spec, opts Options) (*Container, error) {
	if err := containerid.Validate(id); err != nil {
		return nil, err
	}
	if !path.IsAbs(bundle) || path.Clean(bundle) != bundle {
		return nil, fmt.Errorf("bundle %q: not a clean absolute path", bundle)
	}
	if spec == nil {
		return nil, errors.New("no spec")
	}
	if !reVersion.MatchString(spec.Version) {
		return nil, fmt.Errorf("ociVersion %q: want a 1.x runtime-spec version", spec.Version)
	}
	kind, sid, err := Identify(id, spec.Annotations)
	if err != nil {
		return nil, err
	}
	if spec.Root == nil || spec.Root.Path == "" {
		return nil, errors.New("root.path: missing")
	}
	rootfs := spec.Root.Path
	if !path.IsAbs(rootfs) {
		rootfs = path.Join(bundle, rootfs)
	}
	proc, err := processOf(spec.Process)
	if err != nil {
		return nil, err
	}
	mounts, ignored, err := mountsOf(bundle, spec.Mounts)
	if err != nil {
		return nil, err
	}
	for _, what := range ignored {
		log.G(ctx).Warnf("container %s: %s: file system options on a bind mount are ignored (mount(2) ignores them; runc 1.1 passes them on)", id, what)
	}
	joins, err := namespacesOf(kind, spec, opts.SandboxNamespaces)
	if err != nil {
		return nil, err
	}
	hostHas := opts.HostDevice
	if hostHas == nil {
		hostHas = hostDevice
	}
	devices, absent, err := devicesOf(spec, hostHas)
	if err != nil {
		return nil, err
	}
	memFS := opts.MemoryFS
	if memFS == nil {
		memFS = statMemoryFS
	}
	var res *specs.LinuxResources
	if spec.Linux != nil {
		res = spec.Linux.Resources
	}
	memVols, err := memoryVolumesOf(id, mounts, res, memFS)
	if err != nil {
		return nil, err
	}
	return &Container{
		ID:                id,
		SandboxID:         sid,
		Kind:              kind,
		Bundle:            bundle,
		Rootfs:            path.Clean(rootfs),
		RootfsReadonly:    spec.Root.Readonly,
		Hostname:          spec.Hostname,
		Process:           proc,
		JoinSandboxPidNS:  slices.Contains(joins, specs.PIDNamespace),
		SandboxNamespaces: joins,
		Mounts:            mounts,
		Devices:           devices,
		AbsentDevices:     absent,
		MemoryVolumes:     memVols,
		Resources:         resourcesOf(spec),
		Annotations:       maps.Clone(spec.Annotations),
		Spec:              spec,
	}, nil
}
