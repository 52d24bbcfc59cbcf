//go:build !linux

package config

import "runtime"

// DetectHost reports the CPU count; memory is unknown outside Linux.
func DetectHost() (Host, error) {
	return Host{CPUs: uint32(runtime.NumCPU())}, nil
}
