package shim_test

import (
	"context"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/vessel-containers/vessel/internal/testutil"
)

// startMonitor builds vessel-monitor, runs it on a free loopback port over sbRoot and
// returns its /metrics URL once it answers. It is stopped and reaped when the test ends.
func startMonitor(t *testing.T, sbRoot string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "vessel-monitor")
	build := exec.Command("go", "build", "-o", bin, "./cmd/vessel-monitor")
	build.Dir = testutil.RepoRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build vessel-monitor: %v\n%s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(bin, "--listen", addr, "--root", sbRoot)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }() // owner: the test; reaps the monitor
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		if err := <-exited; err != nil {
			t.Logf("vessel-monitor stopped: %v", err) // killed: expected
		}
	})
	url := "http://" + addr + "/metrics"
	testutil.WaitFor(t, "vessel-monitor to answer", func() bool {
		select {
		case err := <-exited:
			t.Fatalf("vessel-monitor exited: %v", err)
		default:
		}
		resp, err := http.Get(url) //nolint:noctx // a local probe
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return url
}

// series is one scrape: metric name → label set ("k=v,..." sorted) → value.
type series map[string]map[string]float64

func scrape(t *testing.T, url string) (series, time.Duration) {
	t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	out := series{}
	for name, f := range fams {
		out[name] = map[string]float64{}
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			out[name][strings.Join(labels, ",")] = value(f.GetType(), m)
		}
	}
	return out, took
}

func value(t dto.MetricType, m *dto.Metric) float64 {
	switch t {
	case dto.MetricType_COUNTER:
		return m.GetCounter().GetValue()
	case dto.MetricType_GAUGE:
		return m.GetGauge().GetValue()
	case dto.MetricType_HISTOGRAM:
		return float64(m.GetHistogram().GetSampleCount())
	}
	return m.GetUntyped().GetValue()
}

// get returns the value of name whose labels include all of want ("k=v").
func (s series) get(name string, want ...string) (float64, bool) {
	for labels, v := range s[name] {
		have := strings.Split(labels, ",")
		ok := true
		for _, w := range want {
			found := false
			for _, h := range have {
				if h == w {
					found = true
				}
			}
			ok = ok && found
		}
		if ok {
			return v, true
		}
	}
	return 0, false
}

// mentions reports whether any series carries the label sandbox=id.
func (s series) mentions(id string) []string {
	var names []string
	for name, m := range s {
		for labels := range m {
			if strings.Contains(","+labels+",", ",sandbox="+id+",") {
				names = append(names, name)
				break
			}
		}
	}
	return names
}

// TestMonitorSandboxes: vessel-monitor, scraped with three sandboxes running, reports each
// one's host figures (its QEMU's memory and CPU), its guest's (memory, CPU, load), its
// container's cgroup figures and OOM counts, and the shim's own (create phases, agent
// calls, the shim process); a deleted sandbox's series are gone from the next scrape.
func TestMonitorSandboxes(t *testing.T) {
	h := newHarnessConfig(t, "default_memory = 256\ndefault_vcpus = 1\n")
	ids := []string{"mon1", "mon2", "mon3"}
	for _, id := range ids {
		h.start(id, nil, "sleep", "600")
	}
	url := startMonitor(t, h.sbRoot)
	s, took := scrape(t, url)
	t.Logf("scrape of %d sandboxes: %s", len(ids), took)

	for _, id := range ids {
		sb := "sandbox=" + id
		checks := []struct {
			name   string
			labels []string
			min    float64
		}{
			{"vessel_process_resident_memory_bytes", []string{sb, "process=vmm"}, 16 << 20},
			{"vessel_process_cpu_seconds_total", []string{sb, "process=vmm"}, 0.01},
			{"vessel_process_pss_bytes", []string{sb, "process=vmm"}, 16 << 20},
			{"vessel_sandbox_shim_up", []string{sb}, 1},
			{"vessel_guest_memory_total_bytes", []string{sb}, 64 << 20},
			{"vessel_guest_memory_available_bytes", []string{sb}, 1 << 20},
			{"vessel_guest_cpu_seconds_total", []string{sb, "mode=system"}, 0.01},
			{"vessel_guest_load1", []string{sb}, 0},
			{"vessel_container_memory_usage_bytes", []string{sb, "container=" + id}, 1},
			{"vessel_container_cpu_seconds_total", []string{sb, "container=" + id}, 0},
			{"vessel_container_oom_kills_total", []string{sb, "container=" + id}, 0},
			{"vessel_container_pids", []string{sb, "container=" + id}, 1},
			{"vessel_sandbox_create_phase_seconds", []string{sb, "phase=vm_start"}, 1},
			{"vessel_sandbox_create_phase_seconds", []string{sb, "phase=agent_connect"}, 1},
			{"vessel_sandbox_create_phase_seconds", []string{sb, "phase=container_create"}, 1},
			{"vessel_agent_call_duration_seconds", []string{sb, "method=CreateContainer"}, 1},
			{"vessel_shim_process_resident_memory_bytes", []string{sb}, 1 << 20},
		}
		for _, c := range checks {
			v, ok := s.get(c.name, c.labels...)
			if !ok || v < c.min {
				t.Errorf("%s{%s} = %v (present %v), want at least %v", c.name, strings.Join(c.labels, ","), v, ok, c.min)
			}
		}
	}
	if v, _ := s.get("vessel_sandboxes"); v != float64(len(ids)) {
		t.Errorf("vessel_sandboxes = %v, want %d", v, len(ids))
	}

	h.remove("mon2")
	s, _ = scrape(t, url)
	if names := s.mentions("mon2"); len(names) > 0 {
		t.Errorf("after mon2's deletion, series of it remain: %v", names)
	}
	for _, id := range []string{"mon1", "mon3"} {
		if _, ok := s.get("vessel_guest_memory_total_bytes", "sandbox="+id); !ok {
			t.Errorf("after mon2's deletion, %s's guest series are gone too", id)
		}
	}
	if v, _ := s.get("vessel_sandboxes"); v != 2 {
		t.Errorf("vessel_sandboxes = %v after a deletion, want 2", v)
	}
}
