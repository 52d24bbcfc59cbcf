package shim

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/pkg/shutdown"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vessel-containers/vessel/internal/shimproto"
)

func scrapeSocket(t *testing.T, sock string) string {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://shim/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The metrics socket serves the shim's own figures (agent calls, its process) and, with no
// sandbox, no guest figures; stop closes it and removes the socket.
func TestMetricsSocket(t *testing.T) {
	ctx, sd := shutdown.WithShutdown(context.Background())
	t.Cleanup(func() { sd.Shutdown(); <-sd.Done() })
	dir, err := os.MkdirTemp("", "vmet")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := newService(ctx, &recorder{}, sd, dir)
	s.metrics.observeCall("CreateContainer", 300*time.Millisecond, nil)
	s.metrics.observeCall("CreateContainer", time.Second, errors.New("boom"))

	ms, err := serveMetrics(ctx, s.metrics, dir, http.NotFoundHandler())
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, shimproto.MetricsSocket)
	text := scrapeSocket(t, sock)
	for _, want := range []string{
		`vessel_agent_call_duration_seconds_count{method="CreateContainer"} 2`,
		`vessel_agent_call_errors_total{method="CreateContainer"} 1`,
		"vessel_shim_process_resident_memory_bytes ",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "vessel_guest_") || strings.Contains(text, "vessel_container_") {
		t.Errorf("guest figures without a sandbox:\n%s", text)
	}
	ms.stop()
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket after stop: %v, want it removed", err)
	}
	var nilServer *metricsServer
	nilServer.stop() // no socket: nothing to stop
}

func TestEmitText(t *testing.T) {
	text := `# HELP vessel_guest_load1 Guest load average.
# TYPE vessel_guest_load1 gauge
vessel_guest_load1 0.5
# HELP vessel_guest_cpu_seconds_total Guest CPU time of all CPUs, by mode.
# TYPE vessel_guest_cpu_seconds_total counter
vessel_guest_cpu_seconds_total{mode="user"} 2.5
vessel_guest_cpu_seconds_total{mode="idle"} 50
`
	c := prometheus.CollectorFunc(func(ch chan<- prometheus.Metric) {
		if err := emitText(ch, text); err != nil {
			t.Error(err)
		}
	})
	if err := testutil.CollectAndCompare(c, strings.NewReader(text)); err != nil {
		t.Error(err)
	}
	if err := emitText(make(chan prometheus.Metric, 1), "not { prometheus"); err == nil {
		t.Error("emitText of garbage: no error")
	}
}
