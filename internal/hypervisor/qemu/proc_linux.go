package qemu

import "syscall"

// sysProcAttr is how QEMU is started. Pdeathsig SIGKILL makes the kernel kill QEMU when
// its parent dies, so a crashed shim never leaves a VM behind. Linux delivers it when the
// parent *thread* exits: the goroutine calling Start must not be one locked to an OS
// thread (runtime.LockOSThread) that exits while the VM runs.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
