//go:build linux

package libct

import (
	"testing"

	"github.com/opencontainers/cgroups"
	devconfig "github.com/opencontainers/cgroups/devices/config"
)

func TestMergeResourcesKeepsUnsetFieldsAndDevices(t *testing.T) {
	swappiness := uint64(10)
	pids := int64(100)
	dst := &cgroups.Resources{
		Memory:           64 << 20,
		CpuQuota:         50000,
		PidsLimit:        &pids,
		MemorySwappiness: &swappiness,
		Devices:          []*devconfig.Rule{{Type: 'c', Major: 1, Minor: 3, Allow: true}},
	}
	upd := &cgroups.Resources{Memory: 128 << 20, CpuPeriod: 100000, Devices: nil}
	mergeResources(dst, upd)
	if dst.Memory != 128<<20 || dst.CpuPeriod != 100000 {
		t.Errorf("updated fields not applied: %+v", dst)
	}
	if dst.CpuQuota != 50000 || dst.PidsLimit != &pids || dst.MemorySwappiness != &swappiness {
		t.Errorf("unset fields changed: %+v", dst)
	}
	if len(dst.Devices) != 1 {
		t.Errorf("device rules changed: %v", dst.Devices)
	}
}

func TestRlimitNumber(t *testing.T) {
	if n, err := rlimitNumber("RLIMIT_NOFILE"); err != nil || n != 7 {
		t.Fatalf("RLIMIT_NOFILE = %d, %v", n, err)
	}
	if _, err := rlimitNumber("RLIMIT_BOGUS"); err == nil {
		t.Fatal("no error for an unknown rlimit")
	}
}
