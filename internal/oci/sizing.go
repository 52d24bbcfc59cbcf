package oci

import (
	"math"
	"math/big"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/vessel-containers/vessel/internal/config"
)

// defaultCPUPeriod is the kernel's CFS period (µs), used when a quota comes without a period.
const defaultCPUPeriod = 100000

const mib = 1 << 20

// Resources are the limits of one workload (a container, or a whole pod from the CRI sizing
// annotations) that size the VM.
type Resources struct {
	// CPUQuota is the CFS quota in µs per period; zero or negative means no CPU limit.
	CPUQuota int64
	// CPUPeriod is the CFS period in µs; zero means the kernel's 100000.
	CPUPeriod uint64
	// MemoryLimitBytes; zero or negative means no memory limit.
	MemoryLimitBytes int64
	// HugePageBytes is the sum of the hugepage limits: the guest reserves huge pages for
	// the container's hugetlbfs volumes out of its memory.
	HugePageBytes int64
}

// CPUs is the workload's CPU limit as an exact fraction (quota/period); 0 when unlimited.
func (r Resources) CPUs() *big.Rat {
	if r.CPUQuota <= 0 {
		return new(big.Rat)
	}
	period := r.CPUPeriod
	if period == 0 {
		period = defaultCPUPeriod
	}
	return new(big.Rat).SetFrac(big.NewInt(r.CPUQuota), new(big.Int).SetUint64(period))
}

// resourcesOf reads a spec's CPU quota/period and memory limit.
func resourcesOf(spec *specs.Spec) Resources {
	if spec.Linux == nil {
		return Resources{}
	}
	return ResourcesOf(spec.Linux.Resources)
}

// ResourcesOf reads the CPU quota/period and memory limit of a container's resources.
func ResourcesOf(res *specs.LinuxResources) Resources { return Resources{}.Updated(res) }

// Updated is r with the values an update's resources set; what they leave out stays, as
// runc's update does.
func (r Resources) Updated(res *specs.LinuxResources) Resources {
	if res == nil {
		return r
	}
	if cpu := res.CPU; cpu != nil {
		if cpu.Quota != nil {
			r.CPUQuota = *cpu.Quota
		}
		if cpu.Period != nil {
			r.CPUPeriod = *cpu.Period
		}
	}
	if m := res.Memory; m != nil && m.Limit != nil {
		r.MemoryLimitBytes = *m.Limit
	}
	if len(res.HugepageLimits) > 0 {
		r.HugePageBytes = 0
		for _, l := range res.HugepageLimits {
			r.HugePageBytes += int64(min(l.Limit, 1<<62)) //nolint:gosec // capped above
		}
	}
	return r
}

// Sizing is a VM's size: at boot, and the most it may grow to.
type Sizing struct {
	VCPUs        uint32
	MaxVCPUs     uint32
	MemoryMiB    uint32
	MaxMemoryMiB uint32
	// WorkloadCPUs is the exact sum of the workloads' CPU limits (quota/period).
	WorkloadCPUs *big.Rat
	// WorkloadMemoryMiB is the workloads' summed memory limits, rounded up to MiB.
	WorkloadMemoryMiB uint64
	// Capped is set when a maximum cut the size below what the workloads asked for.
	Capped bool
}

// ComputeSizing sizes a VM for workloads: vCPUs = default + ceil(sum of quota/period),
// computed exactly with rationals (ten workloads of 0.1 CPU add exactly one vCPU); memory =
// default + the summed limits (memory and huge pages) rounded up to MiB. Both are capped
// at the limits' maxima.
// Without workloads (or without limits) the VM gets the defaults.
func ComputeSizing(l config.Limits, workloads ...Resources) Sizing {
	cpus := new(big.Rat)
	mem := new(big.Int)
	for _, w := range workloads {
		cpus.Add(cpus, w.CPUs())
		if w.MemoryLimitBytes > 0 {
			mem.Add(mem, big.NewInt(w.MemoryLimitBytes))
		}
		if w.HugePageBytes > 0 {
			mem.Add(mem, big.NewInt(w.HugePageBytes))
		}
	}
	memMiB := ceilDiv(mem, big.NewInt(mib))

	s := Sizing{MaxVCPUs: l.MaxVCPUs, MaxMemoryMiB: l.MaxMemoryMiB, WorkloadCPUs: cpus}
	s.WorkloadMemoryMiB = saturate(memMiB, math.MaxUint64)

	extraCPU := ceilDiv(cpus.Num(), cpus.Denom())
	var capped bool
	s.VCPUs, capped = addCapped(l.DefaultVCPUs, extraCPU, l.MaxVCPUs)
	s.Capped = capped
	s.MemoryMiB, capped = addCapped(l.DefaultMemoryMiB, memMiB, l.MaxMemoryMiB)
	s.Capped = s.Capped || capped
	return s
}

// addCapped returns min(base+extra, limit) and whether the limit applied.
func addCapped(base uint32, extra *big.Int, limit uint32) (uint32, bool) {
	sum := new(big.Int).Add(big.NewInt(int64(base)), extra)
	if sum.Cmp(big.NewInt(int64(limit))) > 0 {
		return limit, true
	}
	return uint32(sum.Uint64()), false
}

// ceilDiv is ceil(a/b) for a >= 0, b > 0.
func ceilDiv(a, b *big.Int) *big.Int {
	q, r := new(big.Int).QuoRem(a, b, new(big.Int))
	if r.Sign() > 0 {
		q.Add(q, big.NewInt(1))
	}
	return q
}

func saturate(n *big.Int, limit uint64) uint64 {
	if !n.IsUint64() {
		return limit
	}
	return min(n.Uint64(), limit)
}
