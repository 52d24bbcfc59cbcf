package imagebuilder

import (
	"debug/elf"
	"fmt"
	"io"
	"runtime"
	"strings"
)

// CheckStatic returns an error unless path is a statically linked ELF executable for this
// machine's architecture (the guest's). An initramfs holds no shared libraries, so a binary
// with a program interpreter (PT_INTERP) cannot run there.
func CheckStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s is not an ELF executable: %w", path, err)
	}
	defer f.Close()
	if want := hostMachine(); f.Machine != want {
		return fmt.Errorf("%s is built for %s, the guest needs %s", path, f.Machine, want)
	}
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return fmt.Errorf("%s is an ELF %s, not an executable", path, f.Type)
	}
	for _, p := range f.Progs {
		if p.Type != elf.PT_INTERP {
			continue
		}
		interp, _ := io.ReadAll(io.LimitReader(p.Open(), 4096))
		return fmt.Errorf("%s is dynamically linked (interpreter %s); the initramfs has no shared libraries",
			path, strings.TrimRight(string(interp), "\x00"))
	}
	if f.Type == elf.ET_DYN && f.Entry == 0 {
		return fmt.Errorf("%s is a shared library, not an executable", path)
	}
	return nil
}

// hostMachine is the ELF machine of the running architecture.
func hostMachine() elf.Machine {
	switch runtime.GOARCH {
	case "arm64":
		return elf.EM_AARCH64
	case "s390x":
		return elf.EM_S390
	case "ppc64le":
		return elf.EM_PPC64
	default:
		return elf.EM_X86_64
	}
}
