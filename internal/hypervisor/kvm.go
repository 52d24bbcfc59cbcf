package hypervisor

import (
	"bufio"
	"errors"
	"strings"
)

// ErrNoHardwareVirt means /dev/kvm works but the CPU has no VT-x/AMD-V. Seen on nested
// hosts whose KVM is a paravirtual backend (e.g. kvm_pvm): QEMU opens /dev/kvm and creates
// the VM, then SeaBIOS runs, but a standard Linux guest dies early with "KVM internal
// error ... emulation failure", and `-cpu host` aborts on MSR 0x10a.
var ErrNoHardwareVirt = errors.New("the CPU advertises neither vmx nor svm: KVM here cannot run a standard guest kernel")

// CPUHasHardwareVirt reports whether /proc/cpuinfo content lists vmx (Intel VT-x) or svm
// (AMD-V) among the flags of the first processor.
func CPUHasHardwareVirt(cpuinfo string) bool {
	sc := bufio.NewScanner(strings.NewReader(cpuinfo))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(key) != "flags" {
			continue
		}
		for _, f := range strings.Fields(val) {
			if f == "vmx" || f == "svm" {
				return true
			}
		}
		return false
	}
	return false
}
