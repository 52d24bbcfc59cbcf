//go:build linux

package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
)

// fakeSysfs lays out cpu and memory control files like sysfs does.
func fakeSysfs(t *testing.T, cpus map[string]string, mems map[string]string) string {
	t.Helper()
	sys := t.TempDir()
	for name, online := range cpus {
		d := filepath.Join(sys, "devices/system/cpu", name)
		must(t, os.MkdirAll(d, 0o755))
		if online != "" {
			must(t, os.WriteFile(filepath.Join(d, "online"), []byte(online+"\n"), 0o644))
		}
	}
	for name, state := range mems {
		d := filepath.Join(sys, "devices/system/memory", name)
		must(t, os.MkdirAll(d, 0o755))
		must(t, os.WriteFile(filepath.Join(d, "state"), []byte(state+"\n"), 0o644))
	}
	must(t, os.MkdirAll(filepath.Join(sys, "devices/system/cpu/cpufreq"), 0o755))
	must(t, os.MkdirAll(filepath.Join(sys, "devices/system/memory"), 0o755))
	must(t, os.WriteFile(filepath.Join(sys, "devices/system/memory/block_size_bytes"), []byte("8000000\n"), 0o644))
	return sys
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	must(t, err)
	return strings.TrimSpace(string(b))
}

func TestOnlineCPUMem(t *testing.T) {
	sys := fakeSysfs(t,
		map[string]string{"cpu0": "", "cpu1": "1", "cpu2": "0", "cpu3": "0", "cpu10": "0"},
		map[string]string{"memory0": "online", "memory8": "offline"})
	svc := testService(t)
	svc.cfg.SysDir = sys
	ctx := context.Background()
	// Two CPUs: cpu2 and cpu3 (numeric order, not cpu10), and the offline memory block.
	if _, err := svc.OnlineCPUMem(ctx, &agentv1.OnlineCPUMemRequest{NbCpus: 2, Wait: true}); err != nil {
		t.Fatal(err)
	}
	cpu := filepath.Join(sys, "devices/system/cpu")
	if read(t, cpu+"/cpu2/online") != "1" || read(t, cpu+"/cpu3/online") != "1" || read(t, cpu+"/cpu10/online") != "0" {
		t.Fatal("wrong CPUs onlined")
	}
	if got := read(t, filepath.Join(sys, "devices/system/memory/memory8/state")); got != "online_movable" {
		t.Fatalf("memory8 = %q", got)
	}
	// Waiting for a CPU that never comes gives up with an error.
	svc2 := testService(t)
	svc2.cfg.SysDir = fakeSysfs(t, map[string]string{"cpu0": ""}, nil)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := svc2.OnlineCPUMem(cctx, &agentv1.OnlineCPUMemRequest{NbCpus: 1, Wait: true, CpuOnly: true}); err == nil {
		t.Fatal("no error when the CPU never appears")
	}
}

func TestGuestDetails(t *testing.T) {
	svc := testService(t)
	svc.cfg.SysDir = fakeSysfs(t, nil, map[string]string{"memory0": "online"})
	d, err := svc.GetGuestDetails(context.Background(), &agentv1.GuestDetailsRequest{MemBlockSize: true, MemHotplugProbe: true})
	if err != nil {
		t.Fatal(err)
	}
	if d.MemBlockSizeBytes != 128<<20 || d.SupportMemHotplugProbe || d.AgentDetails.Version == "" || len(d.AgentDetails.StorageHandlers) == 0 {
		t.Fatalf("details = %+v", d)
	}
	if _, err := svc.MemHotplugByProbe(context.Background(), &agentv1.MemHotplugByProbeRequest{MemHotplugProbeAddr: []uint64{1 << 32}}); err == nil {
		t.Fatal("probe without a probe file succeeded")
	}
}

func TestMetricsFormat(t *testing.T) {
	m, err := testService(t).GetMetrics(context.Background(), &agentv1.GetMetricsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"vessel_agent_goroutines ", "vessel_agent_rss_bytes ", "vessel_guest_memory_total_bytes ", "vessel_guest_load1 "} {
		if !strings.Contains(m.Metrics, "\n"+name) {
			t.Errorf("metrics lack %q:\n%s", name, m.Metrics)
		}
	}
}

func TestMetricsBootTimes(t *testing.T) {
	svc := testService(t)
	m, err := svc.GetMetrics(context.Background(), &agentv1.GetMetricsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(m.Metrics, "_boot_seconds") {
		t.Errorf("boot times reported before they are known:\n%s", m.Metrics)
	}
	svc.cfg.StartedAt = 1500 * time.Millisecond
	svc.MarkReady(1750 * time.Millisecond)
	if m, err = svc.GetMetrics(context.Background(), &agentv1.GetMetricsRequest{}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"\nvessel_agent_start_boot_seconds 1.5\n", "\nvessel_agent_ready_boot_seconds 1.75\n"} {
		if !strings.Contains(m.Metrics, want) {
			t.Errorf("metrics lack %q:\n%s", want, m.Metrics)
		}
	}
}

func TestProcKB(t *testing.T) {
	mi := "MemTotal:        501508 kB\nMemFree:  1 kB\nMemAvailable:    473544 kB\n"
	if v, ok := procKB(mi, "MemAvailable"); !ok || v != 473544 {
		t.Fatalf("MemAvailable = %d, %v", v, ok)
	}
	if _, ok := procKB(mi, "Swap"); ok {
		t.Fatal("found a missing key")
	}
}
