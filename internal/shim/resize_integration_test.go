package shim_test

import (
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/vessel-containers/vessel/internal/hypervisor"
)

// TestUpdateShrinksVM: with static_sandbox_resource_mgmt off, a task update to a 2-CPU
// quota and a 1 GiB memory limit grows the VM by the sizing formula (vCPUs = 1 + 2,
// capped at default_maxvcpus, the host's CPUs; memory = 256 MiB + 1 GiB), and lowering
// the limits shrinks its memory back: to 256 MiB + 256 MiB (a 256 MiB DIMM takes the
// place of the 1 GiB one), then with no limit to the boot size. nproc and MemTotal in
// the container follow each step, and a last update back to 2 CPUs and 1 GiB grows it
// again. vCPUs are removed only under KVM (docs/host-cgroups.md): under TCG the VM keeps
// them plugged and the guest keeps the ones the limits do not need offline, so nproc
// follows the limits under both.
func TestUpdateShrinksVM(t *testing.T) {
	h := newHarnessConfig(t, "[runtime]\nstatic_sandbox_resource_mgmt = false\n")
	events := h.ctd.Events(t)
	h.start("shrinkbox", nil, "sleep", "1000")
	waitEvent(t, events, "/tasks/start", `"shrinkbox"`)
	n := 0
	size := func() (int, int) {
		t.Helper()
		n++
		f := strings.Fields(h.ctr("task", "exec", "--exec-id", "size-"+strconv.Itoa(n), "shrinkbox", "sh", "-c", "nproc; grep MemTotal /proc/meminfo"))
		if len(f) < 3 {
			t.Fatalf("nproc and MemTotal: %q", f)
		}
		cpus, err1 := strconv.Atoi(f[0])
		kib, err2 := strconv.Atoi(f[2])
		if err1 != nil || err2 != nil {
			t.Fatalf("nproc and MemTotal: %q", f)
		}
		return cpus, kib >> 10
	}
	hostCPUs := runtime.NumCPU() // default_maxvcpus 0: the host's CPUs (config.Host)
	unplugs := hypervisor.KVMUsable() == nil
	t.Logf("vcpus unplugged (KVM): %v; else parked offline in the guest", unplugs)
	cpus0, mem0 := size()
	if cpus0 != 1 {
		t.Fatalf("boot: %d vCPUs, want 1", cpus0)
	}
	t.Logf("boot: %d vCPUs, MemTotal %d MiB", cpus0, mem0)

	period := uint64(100000)
	for _, step := range []struct {
		name     string
		quota    int64 // -1: no quota
		limit    int64 // -1: no limit
		wantCPUs int   // before the cap
		grow     int   // MiB over the boot MemTotal
	}{
		{"2 CPUs, 1 GiB", 200000, 1 << 30, 3, 1024},
		{"0.5 CPU, 256 MiB", 50000, 256 << 20, 2, 256},
		{"no limits", -1, -1, 1, 0},
		{"2 CPUs, 1 GiB again", 200000, 1 << 30, 3, 1024},
	} {
		q, l := step.quota, step.limit
		begin := time.Now()
		h.updateTask("shrinkbox", &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: &q, Period: &period}, Memory: &specs.LinuxMemory{Limit: &l}})
		took := time.Since(begin)
		want := min(step.wantCPUs, hostCPUs)
		cpus, mem := size()
		if cpus != want {
			t.Errorf("%s: nproc %d, want %d", step.name, cpus, want)
		}
		// The guest's MemTotal moves by the DIMMs' size, give or take what the kernel
		// keeps for their page structures.
		if d := mem - mem0; d < step.grow-16 || d > step.grow+8 {
			t.Errorf("%s: MemTotal %d MiB, %d MiB over the boot's %d, want %d over", step.name, mem, d, mem0, step.grow)
		}
		t.Logf("%s: update took %v; nproc %d, MemTotal %d MiB", step.name, took.Round(time.Millisecond), cpus, mem)
	}
	if st := h.taskStatus("shrinkbox"); st != "RUNNING" {
		t.Errorf("the container is %s after the updates, want RUNNING", st)
	}
}
