//go:build !linux

package qemu

import (
	"syscall"
)

// sysProcAttr: without Pdeathsig nothing kills QEMU if its owner dies; Vessel runs VMs on
// Linux only.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }
