package hypervisor

import "context"

// This file holds what the VM factory (templates and the pre-booted VM cache) needs from a
// driver: booting a VM as a template or from one, handing a running VMM over to another
// process, and growing a VM after it started. Each ability is an optional interface; a
// driver reports the first two and Resizer in Capabilities.Templating, Resizer alone in
// Capabilities.CPUHotplug and MemHotplug.

// TemplateMode says how Config.Template is used.
type TemplateMode int

const (
	// TemplateSave boots the VM with its RAM in Template.MemoryPath, mapped shared, so that
	// TemplateSaver.SaveTemplate can turn it into a template.
	TemplateSave TemplateMode = iota + 1
	// TemplateRestore starts the VM from a saved template: RAM is Template.MemoryPath
	// mapped privately (copy-on-write: the file never changes and its pages are shared by
	// every VM restored from it) and device state is loaded from Template.StatePath. The
	// rest of Config (sizes, devices, kernel command line) must equal the template's;
	// ID, StateDir, SharedDir and the sockets are the new VM's own.
	TemplateRestore
)

// Template locates a VM template's files.
type Template struct {
	Mode TemplateMode
	// MemoryPath is the file holding guest RAM.
	MemoryPath string
	// StatePath is the file holding device state (CPU registers, devices, not RAM).
	StatePath string
}

// TemplateSaver is a VM booted with Template.Mode TemplateSave.
type TemplateSaver interface {
	// SaveTemplate pauses the VM and writes its device state to Template.StatePath; guest
	// RAM is already in Template.MemoryPath. The VM stays paused: Stop it afterwards.
	SaveTemplate(ctx context.Context) error
}

// Adoption identifies a running VMM that another process started and handed over
// (Detacher.Detach). With Config.Adopt set, Start attaches to it instead of starting one:
// the VMM's sockets must already be in Config.StateDir.
type Adoption struct {
	Pid int
	// StartTime is the VMM's process start time (procid.ID.StartTime). It tells the VMM
	// from a process that reused its pid.
	StartTime uint64
}

// Detacher is a VM whose VMM can be handed to another process.
type Detacher interface {
	// Detach closes the driver's control connection and stops supervising the VMM: Stop
	// no longer stops it, and Done closes when it exits (a child is still reaped). The VM
	// must have been started with Config.Handover, or the VMM dies with this process.
	Detach(ctx context.Context) (Adoption, error)
}

// Resizer is a VM that can grow while it runs. The guest must online what was added (the
// agent's OnlineCPUMem).
type Resizer interface {
	// Size is the VM's current vCPUs and memory.
	Size() (vcpus, memoryMiB uint32)
	// Grow hot-plugs vCPUs and memory up to the totals given (never removes any), within
	// Config.MaxVCPUs and Config.MaxMemoryMiB.
	Grow(ctx context.Context, vcpus, memoryMiB uint32) error
}

// CPUPlace is where a vCPU sits in the guest's topology: the socket and core the guest
// kernel reports for it (sysfs topology/physical_package_id and core_id).
type CPUPlace struct{ Socket, Core uint32 }

// CPUShrinker is a Resizer that can also remove vCPUs it hot-plugged. The guest must take
// them out of use first: the caller offlines, through the agent, the CPUs at the places
// CPUPlaces names, then calls ShrinkCPUs.
type CPUShrinker interface {
	// CanShrinkCPUs says why the VM cannot remove vCPUs now (an accelerator that cannot),
	// nil when it can.
	CanShrinkCPUs() error
	// CPUPlaces are the places of the vCPUs ShrinkCPUs(vcpus) would remove, newest first.
	// It answers also where CanShrinkCPUs refuses: the caller then keeps those vCPUs
	// offline in the guest instead of removing them.
	CPUPlaces(ctx context.Context, vcpus uint32) ([]CPUPlace, error)
	// ShrinkCPUs unplugs hot-plugged vCPUs, newest first, down to vcpus total (never
	// below the boot count), waiting for the guest to release each.
	ShrinkCPUs(ctx context.Context, vcpus uint32) error
}

// MemoryRange is guest-physical memory: where a hot-plugged memory device sits, in bytes.
type MemoryRange struct{ Addr, Size uint64 }

// MemoryShrinker is a Resizer that can also remove memory it hot-plugged, in the units it
// added it (whole memory devices). The guest must take the memory out of use first: the
// caller offlines, through the agent, the memory in the ranges MemoryRanges names, then
// calls ShrinkMemory with the same size.
type MemoryShrinker interface {
	// MemoryRanges are the guest-physical ranges of the memory devices ShrinkMemory(memoryMiB)
	// would remove, in the order it removes them: each device whose removal leaves the VM
	// with at least memoryMiB (never below the boot size).
	MemoryRanges(ctx context.Context, memoryMiB uint32) ([]MemoryRange, error)
	// ShrinkMemory unplugs those devices, waiting for the guest to release each. An error
	// leaves the devices not yet released in the VM, and Size tells what the VM has.
	ShrinkMemory(ctx context.Context, memoryMiB uint32) error
	// ReplacementMiB is how much memory to add (Grow, then the agent onlines it) before a
	// shrink to memoryMiB so that a device larger than needed can go: the shrink then
	// leaves memoryMiB rounded up to the driver's unit. 0: none helps, or none fits.
	ReplacementMiB(memoryMiB uint32) uint32
}
