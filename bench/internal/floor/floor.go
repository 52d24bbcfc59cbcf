// Package floor measures the bare-VM floor: QEMU started by Vessel's own driver with the
// guest kernel and the machine options of the effective configuration, booting an
// initramfs whose /init powers the VM off at once. What remains is QEMU's start and exit
// plus the kernel's boot: the least any VM-per-sandbox start can cost on this host.
package floor

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/cavaliergopher/cpio"

	"github.com/vessel-containers/vessel/internal/hypervisor"
)

// loadAddr is where the init executable is mapped.
const loadAddr = 0x400000

// poweroffCode is x86-64 machine code for
//
//	reboot(LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2, LINUX_REBOOT_CMD_POWER_OFF, NULL);
//	exit(0);   // only reached if reboot failed: PID 1 exiting panics the kernel, and
//	           // with panic=-1 and -no-reboot QEMU exits either way
var poweroffCode = []byte{
	0xb8, 0xa9, 0x00, 0x00, 0x00, // mov eax, 169 (SYS_reboot)
	0xbf, 0xad, 0xde, 0xe1, 0xfe, // mov edi, 0xfee1dead
	0xbe, 0x69, 0x19, 0x12, 0x28, // mov esi, 0x28121969
	0xba, 0xdc, 0xfe, 0x21, 0x43, // mov edx, 0x4321fedc (POWER_OFF)
	0x45, 0x31, 0xd2, // xor r10d, r10d
	0x0f, 0x05, // syscall
	0xb8, 0x3c, 0x00, 0x00, 0x00, // mov eax, 60 (SYS_exit)
	0x31, 0xff, // xor edi, edi
	0x0f, 0x05, // syscall
	0xeb, 0xfe, // jmp .
}

// PoweroffInit returns a static x86-64 ELF executable (one PT_LOAD segment, no libc) that
// powers the machine off.
func PoweroffInit() []byte {
	const ehsize, phsize = 64, 56
	size := uint64(ehsize + phsize + len(poweroffCode))
	var b bytes.Buffer
	w := func(v any) { _ = binary.Write(&b, binary.LittleEndian, v) }
	b.Write([]byte{0x7f, 'E', 'L', 'F', 2 /* 64-bit */, 1 /* little endian */, 1 /* version */, 0 /* SysV */})
	b.Write(make([]byte, 8))
	w(uint16(2))                          // e_type: ET_EXEC
	w(uint16(0x3e))                       // e_machine: x86-64
	w(uint32(1))                          // e_version
	w(uint64(loadAddr + ehsize + phsize)) // e_entry
	w(uint64(ehsize))                     // e_phoff
	w(uint64(0))                          // e_shoff
	w(uint32(0))                          // e_flags
	w(uint16(ehsize))                     // e_ehsize
	w(uint16(phsize))                     // e_phentsize
	w(uint16(1))                          // e_phnum
	w(uint16(64))                         // e_shentsize
	w(uint16(0))                          // e_shnum
	w(uint16(0))                          // e_shstrndx
	// Program header: the whole file, read and execute.
	w(uint32(1))        // p_type: PT_LOAD
	w(uint32(5))        // p_flags: R|X
	w(uint64(0))        // p_offset
	w(uint64(loadAddr)) // p_vaddr
	w(uint64(loadAddr)) // p_paddr
	w(size)             // p_filesz
	w(size)             // p_memsz
	w(uint64(0x1000))   // p_align
	b.Write(poweroffCode)
	return b.Bytes()
}

// WriteInitramfs writes an uncompressed newc initramfs holding only /init (PoweroffInit).
func WriteInitramfs(path string) error {
	var buf bytes.Buffer
	w := cpio.NewWriter(&buf)
	initBin := PoweroffInit()
	hdr := &cpio.Header{Name: "init", Mode: cpio.TypeReg | 0o755, Size: int64(len(initBin)), Links: 1}
	if err := w.WriteHeader(hdr); err != nil {
		return fmt.Errorf("floor initramfs: %w", err)
	}
	if _, err := w.Write(initBin); err != nil {
		return fmt.Errorf("floor initramfs: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("floor initramfs: %w", err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("floor initramfs: %w", err)
	}
	return nil
}

// Boot boots one VM with the named driver and cfg (whose Initrd is the floor initramfs)
// and returns the wall time from the start request until the VMM process has exited. A VM
// that ends any other way than by the guest powering off is an error.
func Boot(ctx context.Context, driver string, cfg hypervisor.Config) (time.Duration, error) {
	vm, err := hypervisor.New(driver, cfg)
	if err != nil {
		return 0, fmt.Errorf("floor vm: %w", err)
	}
	begin := time.Now()
	if err := vm.Start(ctx); err != nil {
		return 0, fmt.Errorf("floor vm: %w", err)
	}
	select {
	case <-vm.Done():
	case <-ctx.Done():
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = vm.Stop(stopCtx)
		return 0, fmt.Errorf("floor vm: %w", ctx.Err())
	}
	elapsed := time.Since(begin)
	// The driver reports any exit it did not ask for; a guest power-off is the one we want.
	if err := vm.Err(); err != nil && !strings.Contains(err.Error(), `"guest-shutdown"`) {
		return 0, fmt.Errorf("floor vm did not power off cleanly: %w", err)
	}
	return elapsed, nil
}
