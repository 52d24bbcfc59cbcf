package oci

import (
	"slices"
	"strings"

	"github.com/vessel-containers/vessel/internal/config"
	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/sharefs/virtiofsd"
)

// HypervisorConfig turns an effective configuration and a sizing into the driver's VM
// configuration. ID, StateDir, SharedDir, ShareTag and VirtioFSSocket are left for the caller.
func HypervisorConfig(c *config.Config, s Sizing) hypervisor.Config {
	h := &c.Hypervisor
	vm := hypervisor.Config{
		Path:         h.Path,
		Kernel:       h.Kernel,
		Initrd:       h.Initrd,
		KernelParams: strings.Fields(h.KernelParams),
		Accelerator:  h.Accelerator,
		MachineType:  h.MachineType,
		VCPUs:        s.VCPUs,
		MaxVCPUs:     s.MaxVCPUs,
		MemoryMiB:    s.MemoryMiB,
		MaxMemoryMiB: s.MaxMemoryMiB,
		MemorySlots:  h.MemorySlots,
		SharedFS:     h.SharedFS,
		TBSizeMiB:    h.TBSizeMiB,
		Debug:        h.EnableDebug,
		AgentDebug:   c.Agent.EnableDebug,

		MachineAccelerators: h.MachineAccelerators,
		CPUFeatures:         h.CPUFeatures,
		MemPrealloc:         h.EnableMemPrealloc,
		EntropySource:       h.EntropySource,
	}
	vm.Block = hypervisor.BlockConfig{
		Driver:         hypervisor.BlockDriver(h.BlockDeviceDriver),
		AIO:            hypervisor.BlockAIO(h.BlockDeviceAIO),
		MaxBytesPerSec: h.DiskRateLimiterBwMaxRate / 8,
		MaxIOPS:        h.DiskRateLimiterOpsMaxRate,
	}
	if h.BlockDeviceCacheSet {
		vm.Block.CacheDirect = h.BlockDeviceCacheDirect
		vm.Block.CacheNoFlush = h.BlockDeviceCacheNoflush
	}
	if h.SharedFS == hypervisor.SharedFS9P {
		vm.Msize9P = h.Msize9P
	}
	return vm
}

// VirtioFSD is the virtiofsd configuration of a sandbox whose shared fs is virtio-fs:
// the binary, cache mode, extra options and log level. Source, Socket and Log are left
// for the caller (the sandbox's directories).
func VirtioFSD(c *config.Config) virtiofsd.Config {
	h := &c.Hypervisor
	return virtiofsd.Config{
		Binary:    h.VirtioFSDaemon,
		Cache:     h.VirtioFSCache,
		ExtraArgs: slices.Clone(h.VirtioFSExtraArgs),
		Debug:     h.EnableDebug,
	}
}
