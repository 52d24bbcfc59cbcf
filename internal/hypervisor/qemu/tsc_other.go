//go:build !amd64

package qemu

// rdtsc is never called off amd64 (measureTSCKHz checks GOARCH first).
func rdtsc() uint64 { return 0 }
