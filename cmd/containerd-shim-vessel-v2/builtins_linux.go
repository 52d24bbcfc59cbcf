package main

// Hypervisor drivers compiled into the shim.
import _ "github.com/vessel-containers/vessel/internal/hypervisor/qemu"
