package agent

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
)

// TestOfflineCPUs offlines CPUs by place in a fake sysfs: cpu0 and cpu1 on socket 0 core
// 0, cpu2 on socket 0 core 2, cpu3 offline (no topology).
func TestOfflineCPUs(t *testing.T) {
	cfg := DefaultConfig()
	cfg.SysDir = t.TempDir()
	cpuDir := filepath.Join(cfg.SysDir, "devices/system/cpu")
	for cpu, core := range map[string]string{"cpu0": "0", "cpu1": "0", "cpu2": "2", "cpu3": ""} {
		if err := os.MkdirAll(filepath.Join(cpuDir, cpu, "topology"), 0o755); err != nil {
			t.Fatal(err)
		}
		online := "1"
		if core == "" {
			online = "0"
			if err := os.Remove(filepath.Join(cpuDir, cpu, "topology")); err != nil {
				t.Fatal(err)
			}
		} else {
			for name, v := range map[string]string{"physical_package_id": "0", "core_id": core} {
				if err := os.WriteFile(filepath.Join(cpuDir, cpu, "topology", name), []byte(v+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := os.WriteFile(filepath.Join(cpuDir, cpu, "online"), []byte(online+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	state := func(cpu string) string {
		b, err := os.ReadFile(filepath.Join(cpuDir, cpu, "online"))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	svc := NewService(cfg)
	ctx := context.Background()

	if _, err := svc.OfflineCPUs(ctx, &agentv1.OfflineCPUsRequest{Places: []*agentv1.CPUPlace{{CoreId: 2}, {CoreId: 0}}}); err == nil || !strings.Contains(err.Error(), "holds cpu0") {
		t.Fatalf("offline socket 0: %v, want an error naming cpu0", err)
	}
	if got := state("cpu2"); got != "1" {
		t.Errorf("cpu2 after a refused request: online %q, want 1", got)
	}
	resp, err := svc.OfflineCPUs(ctx, &agentv1.OfflineCPUsRequest{Places: []*agentv1.CPUPlace{{CoreId: 2}, {CoreId: 3}, {SocketId: 1, CoreId: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.GetCpus(); !slices.Equal(got, []uint32{2}) {
		t.Errorf("offlined %v, want [2]", got)
	}
	if got := state("cpu2"); got != "0" {
		t.Errorf("cpu2: online %q, want 0", got)
	}
}
