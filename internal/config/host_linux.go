package config

import (
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// DetectHost reads the CPUs this process may run on and the machine's RAM.
func DetectHost() (Host, error) {
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err != nil {
		return Host{CPUs: uint32(runtime.NumCPU())}, fmt.Errorf("sysinfo: %w", err)
	}
	return Host{
		CPUs:      uint32(runtime.NumCPU()),
		MemoryMiB: uint64(si.Totalram) * uint64(si.Unit) >> 20, //nolint:unconvert // Totalram is uint32 on 32-bit platforms
	}, nil
}
