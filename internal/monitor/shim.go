package monitor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/containerd/log"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/vessel-containers/vessel/internal/persist"
	"github.com/vessel-containers/vessel/internal/shimproto"
	"github.com/vessel-containers/vessel/internal/unixsock"
)

// shimScrapeTimeout bounds the scrape of one shim (the shim asks its agent meanwhile).
const shimScrapeTimeout = 5 * time.Second

// shimScrapers bounds the shims scraped at once.
const shimScrapers = 8

// Shims gathers, on each scrape, what every running sandbox's shim serves on its metrics
// socket (shimproto.MetricsSocket): the guest's memory, CPU and load and its containers'
// cgroup figures, read from the agent by the shim, and the shim's own figures (create
// phases, agent calls, its process). Each sample gets a sandbox label. A sandbox without a
// socket (being created, or deleted) is skipped; one whose shim does not answer is counted
// in vessel_sandbox_shim_up. It describes nothing: what the shims report is known only
// once read.
type Shims struct {
	root string
	up   *prometheus.Desc
}

var _ prometheus.Collector = (*Shims)(nil)

// NewShims returns the shims collector for the sandboxes under root.
func NewShims(root string) *Shims {
	if root == "" {
		root = persist.DefaultRoot
	}
	return &Shims{
		root: root,
		up:   prometheus.NewDesc("vessel_sandbox_shim_up", "1 when the sandbox's shim answered on its metrics socket this scrape.", []string{"sandbox"}, nil),
	}
}

// Describe sends nothing: Shims is an unchecked collector.
func (*Shims) Describe(chan<- *prometheus.Desc) {}

// Collect scrapes the shims of the sandboxes under the root, a few at a time.
func (c *Shims) Collect(ch chan<- prometheus.Metric) {
	entries, err := os.ReadDir(c.root)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			log.L.WithError(err).Warn("monitor: read the sandbox root")
		}
		return
	}
	work := make(chan string)
	var wg sync.WaitGroup
	for range shimScrapers {
		wg.Add(1)
		go func() { // owner: Collect, which waits for it
			defer wg.Done()
			for id := range work {
				c.scrape(ch, id)
			}
		}()
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		if _, err := os.Stat(filepath.Join(c.root, e.Name(), shimproto.MetricsSocket)); err != nil {
			continue // no running sandbox there (yet, or any more)
		}
		work <- e.Name()
	}
	close(work)
	wg.Wait()
}

// scrape reads one sandbox's shim and passes its samples on with the sandbox label.
func (c *Shims) scrape(ch chan<- prometheus.Metric, id string) {
	fams, err := c.fetch(id)
	if err != nil {
		log.L.WithError(err).WithField("sandbox", id).Debug("monitor: shim metrics")
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0, id)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1, id)
	for _, f := range fams {
		relabel(ch, f, id)
	}
}

func (c *Shims) fetch(id string) (map[string]*dto.MetricFamily, error) {
	sock := filepath.Join(c.root, id, shimproto.MetricsSocket)
	client := &http.Client{
		Timeout: shimScrapeTimeout,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return unixsock.Dial(ctx, &d, sock)
			},
			DisableKeepAlives: true,
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), shimScrapeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://shim/metrics", nil)
	if err != nil {
		return nil, fmt.Errorf("scrape shim: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape shim: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape shim: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("scrape shim: %w", err)
	}
	return fams, nil
}

// relabel sends the samples of f with the sandbox label added.
func relabel(ch chan<- prometheus.Metric, f *dto.MetricFamily, sandbox string) {
	for _, m := range f.GetMetric() {
		names := []string{"sandbox"}
		values := []string{sandbox}
		clash := false
		for _, l := range m.GetLabel() {
			if l.GetName() == "sandbox" {
				clash = true
			}
			names = append(names, l.GetName())
			values = append(values, l.GetValue())
		}
		if clash {
			continue
		}
		desc := prometheus.NewDesc(f.GetName(), f.GetHelp(), names, nil)
		var (
			metric prometheus.Metric
			err    error
		)
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			metric, err = prometheus.NewConstMetric(desc, prometheus.CounterValue, m.GetCounter().GetValue(), values...)
		case dto.MetricType_GAUGE:
			metric, err = prometheus.NewConstMetric(desc, prometheus.GaugeValue, m.GetGauge().GetValue(), values...)
		case dto.MetricType_UNTYPED:
			metric, err = prometheus.NewConstMetric(desc, prometheus.UntypedValue, m.GetUntyped().GetValue(), values...)
		case dto.MetricType_HISTOGRAM:
			h := m.GetHistogram()
			buckets := make(map[float64]uint64, len(h.GetBucket()))
			for _, b := range h.GetBucket() {
				buckets[b.GetUpperBound()] = b.GetCumulativeCount()
			}
			metric, err = prometheus.NewConstHistogram(desc, h.GetSampleCount(), h.GetSampleSum(), buckets, values...)
		case dto.MetricType_SUMMARY:
			s := m.GetSummary()
			quantiles := make(map[float64]float64, len(s.GetQuantile()))
			for _, q := range s.GetQuantile() {
				quantiles[q.GetQuantile()] = q.GetValue()
			}
			metric, err = prometheus.NewConstSummary(desc, s.GetSampleCount(), s.GetSampleSum(), quantiles, values...)
		default:
			continue
		}
		if err != nil {
			continue
		}
		ch <- metric
	}
}
