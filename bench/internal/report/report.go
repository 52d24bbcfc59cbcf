// Package report holds the benchmark's results and writes them: JSON (everything, with the
// samples), a Markdown summary and a PNG chart.
package report

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/vessel-containers/vessel/bench/internal/stats"
)

// Runtime names as reported. VesselB is Vessel with the second configuration of an A/B run.
const (
	Vessel  = "vessel"
	Runc    = "runc"
	VesselB = "vessel-b"
)

// Results of one harness run. Durations are seconds, memory MiB. A measure that was not
// selected is nil; one that failed has an entry in Errors (and may be partly filled).
type Results struct {
	Started time.Time `json:"started"`
	Seconds float64   `json:"seconds"`
	Quick   bool      `json:"quick"`
	Runs    int       `json:"runs"`
	Machine Machine   `json:"machine"`
	VM      VMConfig  `json:"vm"`
	// VMB is the second configuration of an A/B run (nil otherwise).
	VMB      *VMConfig `json:"vm_b,omitempty"`
	Floor    *Floor    `json:"floor,omitempty"`
	Cold     *Cold     `json:"cold_start,omitempty"`
	Warm     *Warm     `json:"warm_start,omitempty"`
	Exec     *Exec     `json:"exec,omitempty"`
	Memory   *Memory   `json:"memory,omitempty"`
	Density  *Density  `json:"density,omitempty"`
	Parallel *Parallel `json:"parallel,omitempty"`
	IO       *IO       `json:"io,omitempty"`
	Stdio    *Stdio    `json:"stdio,omitempty"`
	Net      *Net      `json:"net,omitempty"`
	Runsc    *GVisor   `json:"runsc,omitempty"`
	// Conditions record the host's load around each measure: other users of the machine
	// make the figures noisy.
	Conditions []Condition       `json:"conditions"`
	Errors     map[string]string `json:"errors,omitempty"`
}

// Machine describes the host.
type Machine struct {
	Accelerator   string  `json:"accelerator"`
	CPUs          int     `json:"cpus"`
	CPUModel      string  `json:"cpu_model"`
	MemoryGiB     float64 `json:"memory_gib"`
	Kernel        string  `json:"kernel"`
	QEMU          string  `json:"qemu"`
	Containerd    string  `json:"containerd"`
	Runc          string  `json:"runc"`
	VesselVersion string  `json:"vessel_version"`
	GuestKernel   string  `json:"guest_kernel"`
	// GuestInitramfsMiB is the size of the guest initramfs file.
	GuestInitramfsMiB float64 `json:"guest_initramfs_mib"`
}

// VMConfig is the part of Vessel's effective configuration that shapes the figures.
type VMConfig struct {
	ConfigFile   string `json:"config_file"`
	Machine      string `json:"machine"`
	VCPUs        uint32 `json:"vcpus"`
	MemoryMiB    uint32 `json:"memory_mib"`
	TBSizeMiB    uint32 `json:"tb_size_mib"`
	SharedFS     string `json:"shared_fs"`
	KernelParams string `json:"kernel_params"`
}

// Condition is the host's state around one measure.
type Condition struct {
	Measure string  `json:"measure"`
	Seconds float64 `json:"seconds"`
	// LoadBefore and LoadAfter are 1-minute load averages.
	LoadBefore float64 `json:"load_before"`
	LoadAfter  float64 `json:"load_after"`
	// HostBusy is the share of all cores that was busy during the measure (everything on
	// the host, the benchmark included).
	HostBusy float64 `json:"host_busy"`
}

// Floor is the bare-VM floor: QEMU booting the guest kernel into an init that powers off.
type Floor struct {
	Boot stats.Summary `json:"boot"`
	// BootB is the floor of the second configuration of an A/B run.
	BootB *stats.Summary `json:"boot_b,omitempty"`
}

// Cold is `ctr run --rm` from start to exit.
type Cold struct {
	Vessel ColdRuntime `json:"vessel"`
	Runc   ColdRuntime `json:"runc"`
	// VesselB is Vessel with the second configuration of an A/B run.
	VesselB *ColdRuntime `json:"vessel_b,omitempty"`
	// Breakdown splits Vessel's `true` runs into phases (from the shim's debug lines);
	// BreakdownB those of VesselB.
	Breakdown  []PhaseSummary `json:"breakdown"`
	BreakdownB []PhaseSummary `json:"breakdown_b,omitempty"`
	// BreakdownRuns is how many runs the breakdown covers.
	BreakdownRuns int `json:"breakdown_runs"`
}

// ColdRuntime holds one runtime's cold starts.
type ColdRuntime struct {
	True stats.Summary `json:"true"`
	// EchoOutput is the time until `echo` printed; EchoTotal until ctr exited.
	EchoOutput stats.Summary `json:"echo_output"`
	EchoTotal  stats.Summary `json:"echo_total"`
}

// Warm is `ctr run --rm … true` with the VM factory (templates, the VM cache, both), each
// run interleaved with a runc run.
type Warm struct {
	Modes []WarmMode `json:"modes"`
	// Runc is runc's `true`, from the runs interleaved with the warm ones.
	Runc stats.Summary `json:"runc"`
	// Memory is the PSS of idle sandboxes restored from one template (nil when not run).
	Memory *MemoryPoint `json:"memory,omitempty"`
	// MemoryKSM is the same sandboxes read again with the host's KSM on (-ksm).
	MemoryKSM *MemoryPoint `json:"memory_ksm,omitempty"`
}

// WarmMode is one factory configuration's warm starts.
type WarmMode struct {
	Name string `json:"name"`
	// True covers only runs whose VM came from the factory.
	True stats.Summary `json:"true"`
	// ColdFallbacks counts runs whose shim booted cold after all, with the shim's reason.
	ColdFallbacks int    `json:"cold_fallbacks"`
	FallbackWhy   string `json:"fallback_why,omitempty"`
}

// PhaseSummary is one phase of the cold-start breakdown.
type PhaseSummary struct {
	Name    string        `json:"name"`
	Seconds stats.Summary `json:"seconds"`
}

// Exec is `ctr task exec` of `true` into a running container.
type Exec struct {
	Vessel stats.Summary `json:"vessel"`
	Runc   stats.Summary `json:"runc"`
}

// Memory holds the footprint readings.
type Memory struct {
	SettleSeconds float64       `json:"settle_seconds"`
	Points        []MemoryPoint `json:"points"`
}

// MemoryPoint is the footprint with Sandboxes idle sandboxes of one runtime.
type MemoryPoint struct {
	Runtime   string `json:"runtime"`
	Sandboxes int    `json:"sandboxes"`
	// PerSandbox is the PSS of the shim and everything it started (QEMU, helpers), or for
	// runc the shim and the container's processes.
	PerSandbox stats.Summary `json:"per_sandbox_mib"`
	// VMM and Shim split PerSandbox for Vessel.
	VMM  stats.Summary `json:"vmm_mib"`
	Shim stats.Summary `json:"shim_mib"`
	// TotalMiB is the sum over all sandboxes.
	TotalMiB float64 `json:"total_mib"`
	// GuestUsed is MemTotal - MemAvailable inside the guest; GuestTotalMiB is MemTotal.
	GuestUsed     stats.Summary `json:"guest_used_mib"`
	GuestTotalMiB float64       `json:"guest_total_mib"`
	// KSM is set on the point read with the host's kernel samepage merging on.
	KSM *KSM `json:"ksm,omitempty"`
}

// KSM is what kernel samepage merging did for the sandboxes of a memory point.
type KSM struct {
	// MergeSeconds is how long ksmd took for MergeScans full scans at MergePagesToScan pages per
	// wake-up; KsmdCores is ksmd's CPU afterwards at the host's PagesToScan.
	MergeSeconds     float64 `json:"merge_seconds"`
	MergeScans       int     `json:"merge_scans"`
	MergePagesToScan uint64  `json:"merge_pages_to_scan"`
	PagesToScan      uint64  `json:"pages_to_scan"`
	KsmdCores        float64 `json:"ksmd_cores"`
	// PagesShared are distinct merged pages, PagesSharing the further mappings of them
	// (4 KiB each saved), host-wide.
	PagesShared  uint64 `json:"pages_shared"`
	PagesSharing uint64 `json:"pages_sharing"`
}

// Density is how many idle sandboxes fit.
type Density struct {
	Limit      int    `json:"limit"`
	Started    int    `json:"started"`
	StopReason string `json:"stop_reason"`
	// StartSeconds is each sandbox's `ctr run -d` time, ExecSeconds the exec latency
	// measured right after it started.
	StartSeconds []float64     `json:"start_seconds"`
	ExecSeconds  []float64     `json:"exec_seconds"`
	TotalPSSMiB  float64       `json:"total_pss_mib"`
	PerSandbox   stats.Summary `json:"per_sandbox_mib"`
	// HostBusy is the share of all host cores busy while the sandboxes idled;
	// SandboxCores is the CPU the sandboxes themselves used, in cores.
	IdleSeconds  float64 `json:"idle_seconds"`
	HostBusy     float64 `json:"host_busy"`
	SandboxCores float64 `json:"sandbox_cores"`
	// HostAvailableMiB is the host's MemAvailable with all sandboxes running.
	HostAvailableMiB float64 `json:"host_available_mib"`
}

// Parallel is N sandboxes started at once.
type Parallel struct {
	Vessel ParallelRun `json:"vessel"`
	Runc   ParallelRun `json:"runc"`
}

// ParallelRun is one runtime's parallel start.
type ParallelRun struct {
	N         int     `json:"n"`
	Seconds   float64 `json:"seconds"`
	PerMinute float64 `json:"per_minute"`
	// Each is every `ctr run -d`'s own duration.
	Each stats.Summary `json:"each"`
}

// Write writes results.json, results.md and chart.png into dir and returns their paths.
func Write(dir string, r *Results) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("results dir: %w", err)
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode results: %w", err)
	}
	jsonPath := filepath.Join(dir, "results.json")
	if err := os.WriteFile(jsonPath, append(data, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("write results: %w", err)
	}
	mdPath := filepath.Join(dir, "results.md")
	if err := os.WriteFile(mdPath, []byte(Markdown(r)), 0o644); err != nil {
		return nil, fmt.Errorf("write results: %w", err)
	}
	paths := []string{jsonPath, mdPath}
	pngPath := filepath.Join(dir, "chart.png")
	if err := Chart(r, pngPath); err != nil {
		return paths, err
	}
	return append(paths, pngPath), nil
}
