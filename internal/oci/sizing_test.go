package oci

import (
	"math"
	"math/big"
	"testing"

	"github.com/vessel-containers/vessel/internal/config"
)

func cpu(quota int64, period uint64) Resources { return Resources{CPUQuota: quota, CPUPeriod: period} }

func memLimit(bytes int64) Resources { return Resources{MemoryLimitBytes: bytes} }

func repeat(r Resources, n int) []Resources {
	out := make([]Resources, n)
	for i := range out {
		out[i] = r
	}
	return out
}

func TestComputeSizing(t *testing.T) {
	lim := config.Limits{DefaultVCPUs: 1, MaxVCPUs: 8, DefaultMemoryMiB: 256, MaxMemoryMiB: 4096}
	for _, tc := range []struct {
		name      string
		limits    config.Limits
		workloads []Resources
		vcpus     uint32
		memMiB    uint32
		cpus      string // exact workload CPUs
		capped    bool
	}{
		{name: "no workloads: defaults", limits: lim, vcpus: 1, memMiB: 256, cpus: "0"},
		{name: "hugepage limits add memory", limits: lim, workloads: []Resources{{MemoryLimitBytes: 64 << 20, HugePageBytes: 8 << 20}, {HugePageBytes: 1 << 20}}, vcpus: 1, memMiB: 256 + 73, cpus: "0"},
		{name: "no limits: defaults", limits: lim, workloads: []Resources{{}, cpu(-1, 100000), memLimit(0), memLimit(-1)}, vcpus: 1, memMiB: 256, cpus: "0"},
		{name: "0.1 x 10 adds exactly 1", limits: lim, workloads: repeat(cpu(10000, 100000), 10), vcpus: 2, memMiB: 256, cpus: "1"},
		{name: "0.1 x 10 in mixed periods", limits: lim, workloads: append(repeat(cpu(10000, 100000), 5), repeat(cpu(5000, 50000), 5)...), vcpus: 2, memMiB: 256, cpus: "1"},
		{name: "0.1 x 11 adds 2", limits: lim, workloads: repeat(cpu(10000, 100000), 11), vcpus: 3, memMiB: 256, cpus: "11/10"},
		{name: "0.5 + 0.6 adds 2", limits: lim, workloads: []Resources{cpu(50000, 100000), cpu(60000, 100000)}, vcpus: 3, memMiB: 256, cpus: "11/10"},
		{name: "1/3 x 3 adds exactly 1", limits: lim, workloads: repeat(cpu(1, 3), 3), vcpus: 2, memMiB: 256, cpus: "1"},
		{name: "period 0 is 100000", limits: lim, workloads: []Resources{cpu(200000, 0)}, vcpus: 3, memMiB: 256, cpus: "2"},
		{name: "vcpus capped", limits: lim, workloads: repeat(cpu(100000, 100000), 20), vcpus: 8, memMiB: 256, cpus: "20", capped: true},
		{name: "huge quota capped", limits: lim, workloads: []Resources{cpu(math.MaxInt64, 1), cpu(math.MaxInt64, 1)}, vcpus: 8, memMiB: 256, cpus: "18446744073709551614", capped: true},
		{name: "memory summed and rounded up", limits: lim, workloads: []Resources{memLimit(100 << 20), memLimit(1)}, vcpus: 1, memMiB: 357, cpus: "0"},
		{name: "memory capped", limits: lim, workloads: []Resources{memLimit(8 << 30)}, vcpus: 1, memMiB: 4096, cpus: "0", capped: true},
		{name: "huge memory capped", limits: lim, workloads: []Resources{memLimit(math.MaxInt64), memLimit(math.MaxInt64)}, vcpus: 1, memMiB: 4096, cpus: "0", capped: true},
		{name: "both", limits: lim, workloads: []Resources{{CPUQuota: 150000, CPUPeriod: 100000, MemoryLimitBytes: 512 << 20}, {CPUQuota: 25000, CPUPeriod: 100000, MemoryLimitBytes: 64 << 20}}, vcpus: 3, memMiB: 832, cpus: "7/4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := ComputeSizing(tc.limits, tc.workloads...)
			if s.VCPUs != tc.vcpus || s.MemoryMiB != tc.memMiB || s.Capped != tc.capped {
				t.Fatalf("got %d vCPUs, %d MiB, capped %v; want %d, %d, %v", s.VCPUs, s.MemoryMiB, s.Capped, tc.vcpus, tc.memMiB, tc.capped)
			}
			if s.MaxVCPUs != tc.limits.MaxVCPUs || s.MaxMemoryMiB != tc.limits.MaxMemoryMiB {
				t.Fatalf("maxima %d/%d, want the limits", s.MaxVCPUs, s.MaxMemoryMiB)
			}
			if want, _ := new(big.Rat).SetString(tc.cpus); s.WorkloadCPUs.Cmp(want) != 0 {
				t.Fatalf("workload CPUs %s, want %s", s.WorkloadCPUs.RatString(), tc.cpus)
			}
		})
	}
}

// TestSizingNotFloat: a float32 sum of ten 0.1s exceeds 1 and would add two vCPUs.
func TestSizingNotFloat(t *testing.T) {
	var f float32
	for i := 0; i < 10; i++ {
		f += float32(10000) / float32(100000)
	}
	if f <= 1 {
		t.Skip("float32 happens to be exact here; the rational test above still holds")
	}
	s := ComputeSizing(config.Limits{DefaultVCPUs: 1, MaxVCPUs: 16, DefaultMemoryMiB: 256, MaxMemoryMiB: 256}, repeat(cpu(10000, 100000), 10)...)
	if s.VCPUs != 2 {
		t.Fatalf("got %d vCPUs, want 2", s.VCPUs)
	}
}

func TestSandboxResources(t *testing.T) {
	for _, tc := range []struct {
		name    string
		ann     map[string]string
		want    Resources
		wantErr string
	}{
		{"absent", nil, Resources{}, ""},
		{"containerd values", map[string]string{AnnotationSandboxCPUQuota: "150000", AnnotationSandboxCPUPeriod: "100000", AnnotationSandboxMemory: "178257920"},
			Resources{CPUQuota: 150000, CPUPeriod: 100000, MemoryLimitBytes: 178257920}, ""},
		{"unlimited", map[string]string{AnnotationSandboxCPUQuota: "-1", AnnotationSandboxMemory: "0"}, Resources{CPUQuota: -1}, ""},
		{"bad quota", map[string]string{AnnotationSandboxCPUQuota: "1.5"}, Resources{}, AnnotationSandboxCPUQuota},
		{"bad period", map[string]string{AnnotationSandboxCPUPeriod: "-1"}, Resources{}, AnnotationSandboxCPUPeriod},
		{"bad memory", map[string]string{AnnotationSandboxMemory: "1Gi"}, Resources{}, AnnotationSandboxMemory},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := SandboxResources(tc.ann)
			if tc.wantErr != "" {
				if err == nil || !contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want error naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}
