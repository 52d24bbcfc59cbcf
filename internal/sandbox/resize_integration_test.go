package sandbox

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/vessel-containers/vessel/internal/bundle"
	"github.com/vessel-containers/vessel/internal/config"
	"github.com/vessel-containers/vessel/internal/hypervisor"
)

// TestResizeForContainerLimits boots a 1-vCPU, 256 MiB VM with room to grow and checks
// that it takes the sizing formula's size as containers come and change: a container
// created with a 0.5-CPU quota and a 128 MiB limit adds one vCPU and 128 MiB; an update of
// another container to 1 CPU and 256 MiB adds memory (the vCPUs are at the maximum); each
// step is seen from inside a container (nproc, MemTotal).
func TestResizeForContainerLimits(t *testing.T) {
	e := newEnvWith(t, func(c *Config) {
		c.VM.VCPUs, c.VM.MaxVCPUs, c.VM.MemoryMiB, c.VM.MaxMemoryMiB, c.VM.MemorySlots = 1, 2, 256, 1024, 4
		c.Resize = true
		c.Limits = config.Limits{DefaultVCPUs: 1, MaxVCPUs: 2, DefaultMemoryMiB: 256, MaxMemoryMiB: 1024}
	})
	sb := e.sb
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	size := func(name string) (int, int) {
		t.Helper()
		c := e.container(name, []string{"sh", "-c", "nproc; grep MemTotal /proc/meminfo"}, nil)
		code, out, errOut := e.run(c, nil)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", name, code, errOut)
		}
		f := strings.Fields(out)
		if len(f) < 3 {
			t.Fatalf("%s: output %q", name, out)
		}
		cpus, err1 := strconv.Atoi(f[0])
		kib, err2 := strconv.Atoi(f[2])
		if err1 != nil || err2 != nil {
			t.Fatalf("%s: output %q", name, out)
		}
		if err := sb.DeleteContainer(ctx, name); err != nil {
			t.Fatal(err)
		}
		return cpus, kib >> 10
	}
	cpus0, mem0 := size("before")
	if cpus0 != 1 {
		t.Fatalf("boot: %d vCPUs, want 1", cpus0)
	}

	quota, period, limit := int64(50000), uint64(100000), int64(128<<20)
	e.container("limited", []string{"sleep", "1000"}, func(s *specs.Spec) {
		s.Linux.Resources = &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: &quota, Period: &period}, Memory: &specs.LinuxMemory{Limit: &limit}}
	})
	cpus1, mem1 := size("after-create")
	if cpus1 != 2 {
		t.Fatalf("after a 0.5-CPU container: %d vCPUs, want 2", cpus1)
	}
	if d := mem1 - mem0; d < 120 || d > 136 {
		t.Fatalf("after a 128 MiB container: MemTotal grew by %d MiB (%d -> %d), want 128", d, mem0, mem1)
	}

	other := e.container("other", []string{"sleep", "1000"}, nil)
	q2, l2 := int64(100000), int64(256<<20)
	if err := other.Update(ctx, &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: &q2, Period: &period}, Memory: &specs.LinuxMemory{Limit: &l2}}); err != nil {
		t.Fatalf("update: %v", err)
	}
	if r, ok := sb.VM().(hypervisor.Resizer); ok {
		c, m := r.Size()
		t.Logf("vm size after the update: %d vCPUs, %d MiB", c, m)
	}
	cpus2, mem2 := size("after-update")
	if cpus2 != 2 {
		t.Fatalf("after the update: %d vCPUs, want 2 (the maximum)", cpus2)
	}
	if d := mem2 - mem0; d < 376 || d > 392 {
		t.Fatalf("after 128 + 256 MiB of limits: MemTotal grew by %d MiB (%d -> %d), want 384", d, mem0, mem2)
	}
}

// TestShrinkVCPUs boots a 1-vCPU VM with room for 3 and updates a container's CPU quota up
// and down: 2 CPUs grow the VM to 3 vCPUs, 0.5 CPU shrinks it to 2 (the guest offlines the
// newest vCPU, QEMU unplugs it), no quota back to the boot size, 1 CPU grows it again;
// nproc in a new container and in the updated one follow each step. Under TCG, where
// QEMU 7.2 cannot remove vCPUs safely, the driver's refusal is asserted: the VM keeps its
// vCPUs plugged, the guest keeps the ones the limits do not need offline (parked), and
// nproc follows the limits down and up all the same.
func TestShrinkVCPUs(t *testing.T) {
	e := newEnvWith(t, func(c *Config) {
		c.VM.VCPUs, c.VM.MaxVCPUs, c.VM.MemoryMiB, c.VM.MaxMemoryMiB, c.VM.MemorySlots = 1, 3, 256, 512, 2
		c.Resize = true
		c.Limits = config.Limits{DefaultVCPUs: 1, MaxVCPUs: 3, DefaultMemoryMiB: 256, MaxMemoryMiB: 512}
	})
	sb := e.sb
	t.Cleanup(func() { // before the sandbox's cleanup removes it
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(e.root, "sb", hypervisor.ConsoleLogName))
			t.Logf("guest console:\n%s", b)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	r, ok := sb.VM().(hypervisor.Resizer)
	sh, sok := sb.VM().(hypervisor.CPUShrinker)
	if !ok || !sok {
		t.Fatal("the qemu vm is not a hypervisor.Resizer and CPUShrinker")
	}
	shrinkErr := sh.CanShrinkCPUs()
	if shrinkErr != nil {
		want := "vcpu hot-unplug is not done under TCG: QEMU 7.2 stalls the guest's remaining vcpus after one is removed"
		if !strings.Contains(shrinkErr.Error(), want) {
			t.Fatalf("CanShrinkCPUs: %v, want nil (KVM) or an error containing %q", shrinkErr, want)
		}
		t.Logf("vcpus are not removed here: %v", shrinkErr)
	}
	n := 0
	nproc := func() int {
		t.Helper()
		n++
		name := fmt.Sprintf("nproc-%d", n)
		c := e.container(name, []string{"nproc"}, nil)
		code, out, errOut := e.run(c, nil)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", name, code, errOut)
		}
		if err := sb.DeleteContainer(ctx, name); err != nil {
			t.Fatal(err)
		}
		got, err := strconv.Atoi(strings.TrimSpace(out))
		if err != nil {
			t.Fatalf("%s: output %q", name, out)
		}
		return got
	}
	busy := e.container("busy", []string{"sleep", "1000"}, nil)
	if err := busy.Start(ctx); err != nil {
		t.Fatal(err)
	}
	execNproc := func(id string) string {
		t.Helper()
		var out bytes.Buffer
		if err := busy.Exec(ctx, id, bundle.DefaultSpec([]string{"nproc"}, false).Process, ExecOptions{}); err != nil {
			t.Fatal(err)
		}
		st := busy.Attach(ctx, id, IO{Stdout: &out})
		code, err := busy.Wait(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Wait(); err != nil {
			t.Fatal(err)
		}
		if code != 0 {
			t.Fatalf("exec nproc: exit %d", code)
		}
		return strings.TrimSpace(out.String())
	}
	period := uint64(100000)
	most := uint32(1) // the most vCPUs the VM had: what it keeps plugged when it cannot remove them
	for _, step := range []struct {
		name  string
		quota int64 // -1: no quota
		want  uint32
	}{
		{"2 CPUs", 200000, 3},
		{"0.5 CPU", 50000, 2},
		{"no quota", -1, 1},
		{"1 CPU again", 100000, 2},
	} {
		q := step.quota
		begin := time.Now()
		if err := busy.Update(ctx, &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: &q, Period: &period}}); err != nil {
			t.Fatalf("%s: update: %v", step.name, err)
		}
		took := time.Since(begin)
		want := step.want
		plugged := want
		if shrinkErr != nil {
			plugged = max(want, most) // the driver keeps what it plugged
		}
		most = max(most, plugged)
		if got, _ := r.Size(); got != plugged {
			t.Errorf("%s: vm has %d vCPUs plugged, want %d", step.name, got, plugged)
		}
		sb.resizeMu.Lock()
		inUse := sb.vcpusInUse(r)
		sb.resizeMu.Unlock()
		if inUse != want {
			t.Errorf("%s: sandbox counts %d vCPUs in use, want %d", step.name, inUse, want)
		}
		if got := nproc(); got != int(want) {
			t.Errorf("%s: nproc in a new container: %d, want %d", step.name, got, want)
		}
		if got := execNproc(fmt.Sprintf("exec-%d", n)); got != strconv.Itoa(int(want)) {
			t.Errorf("%s: nproc in the updated container: %s, want %d", step.name, got, want)
		}
		t.Logf("%s: %d vCPUs in use, %d plugged (update took %v)", step.name, want, plugged, took.Round(time.Millisecond))
	}
}

// TestShrinkMemoryInUse: memory the guest cannot give up stays, and the update that asked
// for less still succeeds. A container limited to 1 GiB grows a 256 MiB VM to 1280 MiB;
// another, unlimited, fills 700 MiB of tmpfs; lowering the first to 256 MiB then leaves the
// VM at 1280 MiB (the guest refuses to offline 1 GiB it has no room for, and the 256 MiB
// DIMM plugged to take the 1 GiB one's place goes again), with QEMU and the guest agreeing.
// Once the filler is deleted, the VM shrinks to the formula's 512 MiB.
func TestShrinkMemoryInUse(t *testing.T) {
	e := newEnvWith(t, func(c *Config) {
		c.VM.VCPUs, c.VM.MaxVCPUs, c.VM.MemoryMiB, c.VM.MaxMemoryMiB, c.VM.MemorySlots = 1, 1, 256, 2048, 4
		c.Resize = true
		c.Limits = config.Limits{DefaultVCPUs: 1, MaxVCPUs: 1, DefaultMemoryMiB: 256, MaxMemoryMiB: 2048}
	})
	sb := e.sb
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(e.root, "sb", hypervisor.ConsoleLogName))
			t.Logf("guest console:\n%s", b)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	r, ok := sb.VM().(hypervisor.Resizer)
	if !ok {
		t.Fatal("the qemu vm is not a hypervisor.Resizer")
	}
	n := 0
	memTotal := func() int {
		t.Helper()
		n++
		name := fmt.Sprintf("memtotal-%d", n)
		c := e.container(name, []string{"grep", "MemTotal", "/proc/meminfo"}, nil)
		code, out, errOut := e.run(c, nil)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", name, code, errOut)
		}
		if err := sb.DeleteContainer(ctx, name); err != nil {
			t.Fatal(err)
		}
		f := strings.Fields(out)
		if len(f) < 2 {
			t.Fatalf("%s: output %q", name, out)
		}
		kib, err := strconv.Atoi(f[1])
		if err != nil {
			t.Fatalf("%s: output %q", name, out)
		}
		return kib >> 10
	}
	check := func(step string, wantMiB uint32, mem0 int) {
		t.Helper()
		if _, got := r.Size(); got != wantMiB {
			t.Errorf("%s: vm has %d MiB, want %d", step, got, wantMiB)
		}
		if d := memTotal() - mem0; d < int(wantMiB-256)-16 || d > int(wantMiB-256)+8 {
			t.Errorf("%s: MemTotal is %d MiB over the boot's, want %d", step, d, wantMiB-256)
		}
	}
	mem0 := memTotal()

	limited := e.container("limited", []string{"sleep", "1000"}, nil)
	if err := limited.Start(ctx); err != nil {
		t.Fatal(err)
	}
	gib, quarter := int64(1<<30), int64(256<<20)
	if err := limited.Update(ctx, &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &gib}}); err != nil {
		t.Fatalf("update to 1 GiB: %v", err)
	}
	check("1 GiB", 1280, mem0)

	filler := e.container("filler", []string{"sleep", "1000"}, func(s *specs.Spec) {
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/fill", Type: "tmpfs", Source: "tmpfs", Options: []string{"size=1g"}})
	})
	if err := filler.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := filler.Exec(ctx, "fill", bundle.DefaultSpec([]string{"dd", "if=/dev/zero", "of=/fill/x", "bs=1M", "count=700"}, false).Process, ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	var errOut bytes.Buffer
	st := filler.Attach(ctx, "fill", IO{Stderr: &errOut})
	code, err := filler.Wait(ctx, "fill")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Wait(); err != nil {
		t.Fatal(err)
	}
	if code != 0 {
		t.Fatalf("fill: exit %d: %s", code, errOut.String())
	}

	begin := time.Now()
	if err := limited.Update(ctx, &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &quarter}}); err != nil {
		t.Fatalf("update to 256 MiB with the guest's memory in use: %v", err)
	}
	t.Logf("update to 256 MiB with 700 MiB in use took %v", time.Since(begin).Round(time.Millisecond))
	check("256 MiB, memory in use", 1280, mem0)

	begin = time.Now()
	if err := sb.DeleteContainer(ctx, "filler"); err != nil {
		t.Fatal(err)
	}
	t.Logf("delete of the filler, with the shrink, took %v", time.Since(begin).Round(time.Millisecond))
	check("256 MiB, memory free", 512, mem0)
}
