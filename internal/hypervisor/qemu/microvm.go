package qemu

import (
	"fmt"
	"strings"

	"github.com/containerd/errdefs"

	"github.com/vessel-containers/vessel/internal/hypervisor"
)

// machineMicroVM is QEMU's microvm machine: virtio-mmio devices, no PCI, no ACPI (the
// driver turns it off: cmdline.go), firmware that boots the kernel's PVH entry at once. It has no hotplug of any kind, so VMs on it refuse what needs hotplug
// (microvmRefusal) and the hotplug methods fail with errMicroVM.
const machineMicroVM = "microvm"

// isMicroVM tells whether cfg boots a microvm machine.
func isMicroVM(cfg *hypervisor.Config) bool {
	name, _, _ := strings.Cut(cfg.MachineType, ",")
	return name == machineMicroVM
}

// errMicroVM is what every hotplug method of a microvm VM returns; what names the
// operation.
func errMicroVM(what string) error {
	return fmt.Errorf("qemu: %s: hypervisor.machine_type %q has no hotplug (use \"q35\"): %w", what, machineMicroVM, errdefs.ErrNotImplemented)
}

// microvmRefusal reports the first setting of cfg that a microvm machine cannot honour,
// naming its configuration key, or nil.
func microvmRefusal(cfg *hypervisor.Config) error {
	bad := func(key, why string) error {
		return fmt.Errorf("qemu: hypervisor.machine_type %q cannot be used with %s: %s: %w", machineMicroVM, key, why, errdefs.ErrInvalidArgument)
	}
	switch {
	case cfg.MaxVCPUs > cfg.VCPUs:
		return bad("hypervisor.default_maxvcpus above hypervisor.default_vcpus", "vCPUs cannot be hot-plugged")
	case cfg.MaxMemoryMiB > cfg.MemoryMiB:
		return bad("hypervisor.default_maxmemory above hypervisor.default_memory", "memory cannot be hot-plugged")
	case cfg.Template != nil:
		return bad("factory.enable_template", "a template's VM grows by hotplug after it is restored")
	case cfg.Block.Driver == hypervisor.BlockVirtioSCSI:
		return bad(`hypervisor.block_device_driver = "virtio-scsi"`, "disks are hot-plugged and the machine has no PCI")
	}
	return nil
}

// deviceModel is the name of the virtio device model pci (a "-pci" name) on cfg's machine:
// the virtio-mmio variant ("-device") on microvm, pci itself elsewhere.
func deviceModel(cfg *hypervisor.Config, pci string) string {
	if !isMicroVM(cfg) {
		return pci
	}
	return strings.TrimSuffix(pci, "-pci") + "-device"
}

// microvmNICArg is the -device value of NIC n on a microvm machine.
func microvmNICArg(n hypervisor.NIC) string {
	arg := fmt.Sprintf("virtio-net-device,id=%s%s,netdev=%s,mac=%s", nicDevicePrefix, n.ID, n.ID, n.MAC)
	if n.Queues() > 1 {
		arg += ",mq=on"
	}
	return arg
}
