package sandbox

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

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
