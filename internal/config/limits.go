package config

import "math"

// Host is what the machine offers; it bounds VM sizes. A zero field means unknown and bounds
// nothing.
type Host struct {
	CPUs      uint32
	MemoryMiB uint64
}

// Limits are the effective VM size bounds on a host: what sizing starts from and may not
// exceed. DefaultVCPUs <= MaxVCPUs and DefaultMemoryMiB <= MaxMemoryMiB always hold.
type Limits struct {
	DefaultVCPUs     uint32
	MaxVCPUs         uint32
	DefaultMemoryMiB uint32
	MaxMemoryMiB     uint32
}

// Limits resolves the hypervisor's sizing keys on host: a maximum of 0, or one above what
// the host has, becomes the host's amount; defaults above the maximum are lowered to it.
// With hypervisor.machine_type = "microvm" the maxima are the defaults.
func (c *Config) Limits(host Host) Limits {
	h := &c.Hypervisor
	l := Limits{
		DefaultVCPUs:     h.DefaultVCPUs,
		MaxVCPUs:         h.DefaultMaxVCPUs,
		DefaultMemoryMiB: h.DefaultMemory,
		MaxMemoryMiB:     h.DefaultMaxMemory,
	}
	if host.CPUs > 0 && (l.MaxVCPUs == 0 || l.MaxVCPUs > host.CPUs) {
		l.MaxVCPUs = host.CPUs
	}
	if l.MaxVCPUs == 0 {
		l.MaxVCPUs = l.DefaultVCPUs
	}
	l.DefaultVCPUs = min(l.DefaultVCPUs, l.MaxVCPUs)

	hostMiB := uint32(min(host.MemoryMiB, math.MaxUint32))
	if hostMiB > 0 && (l.MaxMemoryMiB == 0 || l.MaxMemoryMiB > hostMiB) {
		l.MaxMemoryMiB = hostMiB
	}
	if l.MaxMemoryMiB == 0 {
		l.MaxMemoryMiB = l.DefaultMemoryMiB
	}
	l.DefaultMemoryMiB = min(l.DefaultMemoryMiB, l.MaxMemoryMiB)
	// A microvm machine cannot grow: the VM's size at boot is its size for good.
	if c.IsMicroVM() {
		l.MaxVCPUs, l.MaxMemoryMiB = l.DefaultVCPUs, l.DefaultMemoryMiB
	}
	return l
}

// IsMicroVM tells whether hypervisor.machine_type is QEMU's microvm machine, which has no
// hotplug.
func (c *Config) IsMicroVM() bool { return c.Hypervisor.MachineType == "microvm" }
