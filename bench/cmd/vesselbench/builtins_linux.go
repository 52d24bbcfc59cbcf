package main

// Hypervisor drivers the floor measure can boot.
import _ "github.com/vessel-containers/vessel/internal/hypervisor/qemu"
