package monitor

import (
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vessel-containers/vessel/internal/shimproto"
	"github.com/vessel-containers/vessel/internal/unixsock"
)

// fakeShim serves text as a shim's metrics socket in root/id.
func fakeShim(t testing.TB, root, id, text string) {
	t.Helper()
	dir := filepath.Join(root, id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	l, err := unixsock.Listen(filepath.Join(dir, shimproto.MetricsSocket), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = w.Write([]byte(text))
	})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(l)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
}

const shimText = `# HELP vessel_guest_memory_total_bytes Guest MemTotal.
# TYPE vessel_guest_memory_total_bytes gauge
vessel_guest_memory_total_bytes 2.68435456e+08
# HELP vessel_container_oom_kills_total Processes of the container's cgroup killed by the OOM killer (memory.events oom_kill).
# TYPE vessel_container_oom_kills_total counter
vessel_container_oom_kills_total{container="c1"} 2
# HELP vessel_sandbox_create_phase_seconds Duration of the phases of creating the sandbox and its containers.
# TYPE vessel_sandbox_create_phase_seconds histogram
vessel_sandbox_create_phase_seconds_bucket{phase="vm_start",le="0.5"} 0
vessel_sandbox_create_phase_seconds_bucket{phase="vm_start",le="1"} 1
vessel_sandbox_create_phase_seconds_bucket{phase="vm_start",le="+Inf"} 1
vessel_sandbox_create_phase_seconds_sum{phase="vm_start"} 0.75
vessel_sandbox_create_phase_seconds_count{phase="vm_start"} 1
`

// Shims passes each shim's samples on with the sandbox label; a socket nobody serves is a
// shim that is down; a sandbox directory without a socket is not scraped.
func TestShims(t *testing.T) {
	root, err := os.MkdirTemp("", "vmon") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	fakeShim(t, root, "sb1", shimText)
	fakeShim(t, root, "sb2", strings.ReplaceAll(shimText, "2.68435456e+08", "5.36870912e+08"))
	// sb3's shim is gone, its socket left behind.
	if err := os.MkdirAll(filepath.Join(root, "sb3"), 0o700); err != nil {
		t.Fatal(err)
	}
	l, err := unixsock.Listen(filepath.Join(root, "sb3", shimproto.MetricsSocket), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	if err := os.MkdirAll(filepath.Join(root, "creating"), 0o700); err != nil {
		t.Fatal(err)
	}

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewShims(root))
	err = testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP vessel_container_oom_kills_total Processes of the container's cgroup killed by the OOM killer (memory.events oom_kill).
# TYPE vessel_container_oom_kills_total counter
vessel_container_oom_kills_total{container="c1",sandbox="sb1"} 2
vessel_container_oom_kills_total{container="c1",sandbox="sb2"} 2
# HELP vessel_guest_memory_total_bytes Guest MemTotal.
# TYPE vessel_guest_memory_total_bytes gauge
vessel_guest_memory_total_bytes{sandbox="sb1"} 2.68435456e+08
vessel_guest_memory_total_bytes{sandbox="sb2"} 5.36870912e+08
# HELP vessel_sandbox_create_phase_seconds Duration of the phases of creating the sandbox and its containers.
# TYPE vessel_sandbox_create_phase_seconds histogram
vessel_sandbox_create_phase_seconds_bucket{phase="vm_start",sandbox="sb1",le="0.5"} 0
vessel_sandbox_create_phase_seconds_bucket{phase="vm_start",sandbox="sb1",le="1"} 1
vessel_sandbox_create_phase_seconds_bucket{phase="vm_start",sandbox="sb1",le="+Inf"} 1
vessel_sandbox_create_phase_seconds_sum{phase="vm_start",sandbox="sb1"} 0.75
vessel_sandbox_create_phase_seconds_count{phase="vm_start",sandbox="sb1"} 1
vessel_sandbox_create_phase_seconds_bucket{phase="vm_start",sandbox="sb2",le="0.5"} 0
vessel_sandbox_create_phase_seconds_bucket{phase="vm_start",sandbox="sb2",le="1"} 1
vessel_sandbox_create_phase_seconds_bucket{phase="vm_start",sandbox="sb2",le="+Inf"} 1
vessel_sandbox_create_phase_seconds_sum{phase="vm_start",sandbox="sb2"} 0.75
vessel_sandbox_create_phase_seconds_count{phase="vm_start",sandbox="sb2"} 1
# HELP vessel_sandbox_shim_up 1 when the sandbox's shim answered on its metrics socket this scrape.
# TYPE vessel_sandbox_shim_up gauge
vessel_sandbox_shim_up{sandbox="sb1"} 1
vessel_sandbox_shim_up{sandbox="sb2"} 1
vessel_sandbox_shim_up{sandbox="sb3"} 0
`))
	if err != nil {
		t.Fatal(err)
	}
}

func TestShimsNoRoot(t *testing.T) {
	if n := testutil.CollectAndCount(NewShims(filepath.Join(t.TempDir(), "missing"))); n != 0 {
		t.Errorf("a missing root gave %d samples, want 0", n)
	}
}

// BenchmarkShims50 scrapes 50 stand-in shims serving about 150 samples each (a guest gauge,
// a container counter, histograms of a phase and of eight agent calls): the monitor's
// share of a scrape, without the agents' answer time.
func BenchmarkShims50(b *testing.B) {
	root, err := os.MkdirTemp("", "vmon")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(root) })
	var text strings.Builder
	text.WriteString(shimText)
	text.WriteString("# HELP vessel_agent_call_duration_seconds Duration of the shim's agent calls, long polls excepted.\n# TYPE vessel_agent_call_duration_seconds histogram\n")
	for _, m := range []string{"Check", "SetGuestDateTime", "ReseedRandomDev", "CreateSandbox", "CreateContainer", "StartContainer", "GetMetrics", "StatsContainer"} {
		for _, le := range []string{"0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30", "+Inf"} {
			text.WriteString("vessel_agent_call_duration_seconds_bucket{method=\"" + m + "\",le=\"" + le + "\"} 1\n")
		}
		text.WriteString("vessel_agent_call_duration_seconds_sum{method=\"" + m + "\"} 0.01\nvessel_agent_call_duration_seconds_count{method=\"" + m + "\"} 1\n")
	}
	for i := range 50 {
		fakeShim(b, root, "sb"+strconv.Itoa(i), text.String())
	}
	c := NewShims(root)
	b.ResetTimer()
	for b.Loop() {
		if n := testutil.CollectAndCount(c); n < 50 {
			b.Fatalf("%d samples, want at least 50", n)
		}
	}
}
