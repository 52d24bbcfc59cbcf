package hypervisor

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

const (
	kvmDevice = "/dev/kvm"
	// KVM ioctls from <linux/kvm.h>: _IO(KVMIO, 0x00) and _IO(KVMIO, 0x01).
	kvmGetAPIVersion = 0xAE00
	kvmCreateVM      = 0xAE01
	kvmAPIVersion    = 12
)

// KVMUsable reports why QEMU's KVM accelerator cannot run a guest here, or nil: /dev/kvm
// opens read-write, speaks API version 12, creates a VM, and the CPU has hardware
// virtualization (see ErrNoHardwareVirt for why the last check is needed).
func KVMUsable() error {
	f, err := os.OpenFile(kvmDevice, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", kvmDevice, err)
	}
	defer f.Close()
	fd := int(f.Fd())
	v, err := unix.IoctlRetInt(fd, kvmGetAPIVersion)
	if err != nil {
		return fmt.Errorf("%s: KVM_GET_API_VERSION: %w", kvmDevice, err)
	}
	if v != kvmAPIVersion {
		return fmt.Errorf("%s: KVM API version %d, want %d", kvmDevice, v, kvmAPIVersion)
	}
	vm, err := unix.IoctlRetInt(fd, kvmCreateVM)
	if err != nil {
		return fmt.Errorf("%s: KVM_CREATE_VM: %w", kvmDevice, err)
	}
	_ = unix.Close(vm)

	cpuinfo, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return fmt.Errorf("read cpu flags: %w", err)
	}
	if !CPUHasHardwareVirt(string(cpuinfo)) {
		return ErrNoHardwareVirt
	}
	return nil
}
