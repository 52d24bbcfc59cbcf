package shim

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/log"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/vessel-containers/vessel/internal/sandbox"
	"github.com/vessel-containers/vessel/internal/shimproto"
	"github.com/vessel-containers/vessel/internal/unixsock"
)

// guestScrapeTimeout bounds the agent requests of one scrape: under vessel-monitor's own
// timeout for a shim (5 s), so that a slow guest still gives the shim's figures.
const guestScrapeTimeout = 3 * time.Second

// shimMetrics are what the shim tells vessel-monitor about its sandbox: its own figures
// (create phases, agent calls, the shim process) and the guest's, read from the agent on
// each scrape. They are served as Prometheus text on a unix socket in the sandbox's state
// directory (shimproto.MetricsSocket); vessel-monitor adds the sandbox label.
type shimMetrics struct {
	reg        *prometheus.Registry
	phases     *prometheus.HistogramVec
	calls      *prometheus.HistogramVec
	callErrors *prometheus.CounterVec
	factory    *prometheus.CounterVec
}

// createBuckets cover a create phase from a few ms to a cold boot under emulation.
var createBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64}

// callBuckets cover an agent call from a fraction of a ms to a slow CreateContainer.
var callBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

func newShimMetrics(s *service) *shimMetrics {
	m := &shimMetrics{
		reg: prometheus.NewRegistry(),
		phases: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "vessel_sandbox_create_phase_seconds",
			Help:    "Duration of the phases of creating the sandbox and its containers.",
			Buckets: createBuckets,
		}, []string{"phase"}),
		calls: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "vessel_agent_call_duration_seconds",
			Help:    "Duration of the shim's agent calls, long polls excepted.",
			Buckets: callBuckets,
		}, []string{"method"}),
		callErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vessel_agent_call_errors_total",
			Help: "Agent calls that failed, long polls excepted.",
		}, []string{"method"}),
		factory: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vessel_factory_vms_total",
			Help: "Sandboxes created with a VM factory configured, by what the factory did: hit, miss, failed, skipped.",
		}, []string{"result"}),
	}
	m.reg.MustRegister(m.phases, m.calls, m.callErrors, m.factory, guestCollector{s},
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{Namespace: "vessel_shim"}))
	return m
}

// observeCall is the sandbox's agentclient.Observer.
func (m *shimMetrics) observeCall(method string, took time.Duration, err error) {
	m.calls.WithLabelValues(method).Observe(took.Seconds())
	if err != nil {
		m.callErrors.WithLabelValues(method).Inc()
	}
}

// observeCreate records the phases of a task's Create: the sandbox's own (sandbox
// create, when this Create made it), the container's creation and the whole call.
func (m *shimMetrics) observeCreate(sb *sandbox.Sandbox, made bool, container, total time.Duration) {
	if made {
		for _, p := range sb.CreatePhases() {
			m.phases.WithLabelValues(p.Name).Observe(p.Duration.Seconds())
		}
		if r := sb.FactoryResult(); r != "" {
			m.factory.WithLabelValues(r).Inc()
		}
	}
	m.phases.WithLabelValues("container_create").Observe(container.Seconds())
	m.phases.WithLabelValues("task_create").Observe(total.Seconds())
}

// guestCollector reads the guest's figures from the agent on each scrape: the agent's
// GetMetrics (guest memory, CPU and load, the agent's own) as the agent reports them, and
// each container's cgroup figures (StatsContainer). It describes nothing: what the guest
// reports is known only once read.
type guestCollector struct{ s *service }

var (
	ctrCPU       = prometheus.NewDesc("vessel_container_cpu_seconds_total", "CPU time of the container's cgroup in the guest.", []string{"container"}, nil)
	ctrMem       = prometheus.NewDesc("vessel_container_memory_usage_bytes", "Memory use of the container's cgroup in the guest.", []string{"container"}, nil)
	ctrMemLimit  = prometheus.NewDesc("vessel_container_memory_limit_bytes", "Memory limit of the container's cgroup in the guest (0: none).", []string{"container"}, nil)
	ctrOOM       = prometheus.NewDesc("vessel_container_oom_events_total", "Times the container's cgroup hit its memory limit (memory.events oom).", []string{"container"}, nil)
	ctrOOMKill   = prometheus.NewDesc("vessel_container_oom_kills_total", "Processes of the container's cgroup killed by the OOM killer (memory.events oom_kill).", []string{"container"}, nil)
	ctrPids      = prometheus.NewDesc("vessel_container_pids", "Processes in the container's cgroup.", []string{"container"}, nil)
	guestScrapes = prometheus.NewDesc("vessel_guest_scrape_errors", "Agent requests that failed during this scrape.", nil, nil)
)

func (guestCollector) Describe(chan<- *prometheus.Desc) {}

func (g guestCollector) Collect(ch chan<- prometheus.Metric) {
	g.s.mu.Lock()
	sb := g.s.sb
	var ids []string
	for id, c := range g.s.containers {
		if !c.creating {
			ids = append(ids, id)
		}
	}
	g.s.mu.Unlock()
	if sb == nil {
		return
	}
	ctx, cancel := context.WithTimeout(g.s.ctx, guestScrapeTimeout)
	defer cancel()
	failed := 0
	agent := sb.Agent()
	if m, err := agent.GetMetrics(ctx); err != nil {
		failed++
		log.G(ctx).WithError(err).Debug("metrics: guest metrics")
	} else if err := emitText(ch, m.GetMetrics()); err != nil {
		failed++
		log.G(ctx).WithError(err).Debug("metrics: guest metrics text")
	}
	for _, id := range ids {
		st, err := agent.StatsContainer(ctx, id)
		if err != nil {
			failed++
			log.G(ctx).WithError(err).WithField("container", id).Debug("metrics: container stats")
			continue
		}
		if c := st.GetCpu(); c != nil {
			ch <- prometheus.MustNewConstMetric(ctrCPU, prometheus.CounterValue, float64(c.GetUsageUsec())/1e6, id)
		}
		if mem := st.GetMemory(); mem != nil {
			ch <- prometheus.MustNewConstMetric(ctrMem, prometheus.GaugeValue, float64(mem.GetUsage()), id)
			ch <- prometheus.MustNewConstMetric(ctrMemLimit, prometheus.GaugeValue, float64(mem.GetLimit()), id)
			ch <- prometheus.MustNewConstMetric(ctrOOM, prometheus.CounterValue, float64(mem.GetOomEvents()), id)
			ch <- prometheus.MustNewConstMetric(ctrOOMKill, prometheus.CounterValue, float64(mem.GetOomKillEvents()), id)
		}
		if p := st.GetPids(); p != nil {
			ch <- prometheus.MustNewConstMetric(ctrPids, prometheus.GaugeValue, float64(p.GetCurrent()), id)
		}
	}
	ch <- prometheus.MustNewConstMetric(guestScrapes, prometheus.GaugeValue, float64(failed))
}

// emitText passes the gauges, counters and untyped samples of Prometheus text on as they
// are; other types are not in what the agent reports and are skipped.
func emitText(ch chan<- prometheus.Metric, text string) error {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		return err //nolint:wrapcheck // the caller logs it as is
	}
	for name, f := range fams {
		var vt prometheus.ValueType
		switch f.GetType() {
		case dto.MetricType_GAUGE:
			vt = prometheus.GaugeValue
		case dto.MetricType_COUNTER:
			vt = prometheus.CounterValue
		case dto.MetricType_UNTYPED:
			vt = prometheus.UntypedValue
		default:
			continue
		}
		for _, m := range f.GetMetric() {
			names := make([]string, 0, len(m.GetLabel()))
			values := make([]string, 0, len(m.GetLabel()))
			for _, l := range m.GetLabel() {
				names = append(names, l.GetName())
				values = append(values, l.GetValue())
			}
			var v float64
			switch vt {
			case prometheus.GaugeValue:
				v = m.GetGauge().GetValue()
			case prometheus.CounterValue:
				v = m.GetCounter().GetValue()
			default:
				v = m.GetUntyped().GetValue()
			}
			metric, err := prometheus.NewConstMetric(prometheus.NewDesc(name, f.GetHelp(), names, nil), vt, v, values...)
			if err != nil {
				continue
			}
			ch <- metric
		}
	}
	return nil
}

// metricsServer serves shimMetrics on the sandbox's metrics socket.
type metricsServer struct {
	srv    *http.Server
	path   string
	served chan struct{}
}

// serveMetrics starts serving m on dir's metrics socket, and api at
// shimproto.DirectVolumePrefix (the direct-volume stats and resize paths) and
// shimproto.ProcessesPath; the server runs until stop.
func serveMetrics(ctx context.Context, m *shimMetrics, dir string, api http.Handler) (*metricsServer, error) {
	path := filepath.Join(dir, shimproto.MetricsSocket)
	l, err := unixsock.Listen(path, 0o600)
	if err != nil {
		return nil, err //nolint:wrapcheck // unixsock names the path
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	mux.Handle(shimproto.DirectVolumePrefix, api)
	mux.Handle(shimproto.ProcessesPath, api)
	mux.Handle(shimproto.InitLogPath, api)
	ms := &metricsServer{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, path: path, served: make(chan struct{})}
	go func() { // owner: the metricsServer; ends when stop closes the server
		defer close(ms.served)
		if err := ms.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.G(ctx).WithError(err).Warn("metrics socket")
		}
	}()
	return ms, nil
}

// stop closes the server, waits for its goroutine and removes the socket.
func (ms *metricsServer) stop() {
	if ms == nil {
		return
	}
	_ = ms.srv.Close()
	<-ms.served
	_ = os.Remove(ms.path)
}
