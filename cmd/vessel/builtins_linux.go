package main

// Hypervisor drivers compiled into vessel.
import _ "github.com/vessel-containers/vessel/internal/hypervisor/qemu"
