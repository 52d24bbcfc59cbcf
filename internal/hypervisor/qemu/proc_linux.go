package qemu

import "syscall"

// sysProcAttr is how QEMU is started. Pdeathsig SIGKILL makes the kernel kill QEMU when
// its parent dies, so a crashed shim never leaves a VM behind. Linux delivers it when the
// parent *thread* exits, so QEMU is forked from a thread reserved until it exited
// (jail.StartPinned).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
