// Package monitor exports Prometheus metrics of the sandboxes under a state root: how many
// there are, their containers, and what their host processes (the VMM and the shared file
// system daemon) cost: CPU time, resident and proportional memory, descriptors, threads.
//
// Sandboxes are discovered from their persisted state (internal/persist) on every scrape,
// so sandboxes that come and go between scrapes are seen as they are. A process is known by
// pid and start time: a recorded pid that now names another process is not reported.
// Reading a scrape touches only /proc and the state files; the guest is not asked.
package monitor

import (
	"errors"
	"os"
	"path/filepath"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/procfs"

	"github.com/vessel-containers/vessel/internal/persist"
	"github.com/vessel-containers/vessel/internal/procid"
)

// Collector gathers the metrics of the sandboxes under one state root.
type Collector struct {
	root string

	sandboxes, stateErrors, containers     *prometheus.Desc
	cpu, rss, pss, fds, threads, processUp *prometheus.Desc
}

var _ prometheus.Collector = (*Collector)(nil)

// New returns a collector for the sandboxes under root (persist.DefaultRoot when empty).
func New(root string) *Collector {
	if root == "" {
		root = persist.DefaultRoot
	}
	proc := []string{"sandbox", "process"}
	return &Collector{
		root:        root,
		sandboxes:   prometheus.NewDesc("vessel_sandboxes", "Sandboxes with a readable state.", nil, nil),
		stateErrors: prometheus.NewDesc("vessel_sandbox_state_errors", "Sandbox directories whose state cannot be read.", nil, nil),
		containers:  prometheus.NewDesc("vessel_sandbox_containers", "Containers in the sandbox.", []string{"sandbox"}, nil),
		processUp:   prometheus.NewDesc("vessel_process_up", "1 when the sandbox's recorded process (vmm, fs_daemon) runs.", proc, nil),
		cpu:         prometheus.NewDesc("vessel_process_cpu_seconds_total", "User and system CPU time of the process.", proc, nil),
		rss:         prometheus.NewDesc("vessel_process_resident_memory_bytes", "Resident memory of the process.", proc, nil),
		pss:         prometheus.NewDesc("vessel_process_pss_bytes", "Proportional set size of the process (shared pages divided among their users).", proc, nil),
		fds:         prometheus.NewDesc("vessel_process_open_fds", "Open file descriptors of the process.", proc, nil),
		threads:     prometheus.NewDesc("vessel_process_threads", "Threads of the process.", proc, nil),
	}
}

// Describe sends the descriptors of every metric the collector makes.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.sandboxes, c.stateErrors, c.containers, c.processUp, c.cpu, c.rss, c.pss, c.fds, c.threads} {
		ch <- d
	}
}

// Collect reads the state root and the recorded processes.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	entries, err := os.ReadDir(c.root)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		log.L.WithError(err).Warn("monitor: read the sandbox root")
	}
	var n, bad int
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		st, err := persist.Load(filepath.Join(c.root, e.Name()))
		if err != nil {
			// A sandbox being created has no state yet; one being deleted has none any
			// more. Anything else is worth a look.
			if !errdefs.IsNotFound(err) {
				bad++
				log.L.WithError(err).WithField("sandbox", e.Name()).Debug("monitor: unreadable sandbox state")
			}
			continue
		}
		n++
		ch <- prometheus.MustNewConstMetric(c.containers, prometheus.GaugeValue, float64(len(st.Containers)), st.ID)
		c.process(ch, st.ID, "vmm", procid.ID{Pid: st.VMPid, StartTime: st.VMStartTime})
		if st.FSDaemonPid > 0 {
			c.process(ch, st.ID, "fs_daemon", procid.ID{Pid: st.FSDaemonPid, StartTime: st.FSDaemonStartTime})
		}
	}
	ch <- prometheus.MustNewConstMetric(c.sandboxes, prometheus.GaugeValue, float64(n))
	ch <- prometheus.MustNewConstMetric(c.stateErrors, prometheus.GaugeValue, float64(bad))
}

// process reports one recorded process of a sandbox, if it is still that process.
func (c *Collector) process(ch chan<- prometheus.Metric, sandbox, name string, id procid.ID) {
	up := func(v float64) {
		ch <- prometheus.MustNewConstMetric(c.processUp, prometheus.GaugeValue, v, sandbox, name)
	}
	if id.Pid <= 0 || id.StartTime == 0 {
		up(0)
		return
	}
	now, err := procid.Of(id.Pid)
	if err != nil || now != id {
		up(0)
		return
	}
	p, err := procfs.NewProc(id.Pid)
	if err != nil {
		up(0)
		return
	}
	stat, err := p.Stat()
	if err != nil {
		up(0)
		return
	}
	up(1)
	ch <- prometheus.MustNewConstMetric(c.cpu, prometheus.CounterValue, stat.CPUTime(), sandbox, name)
	ch <- prometheus.MustNewConstMetric(c.rss, prometheus.GaugeValue, float64(stat.ResidentMemory()), sandbox, name)
	ch <- prometheus.MustNewConstMetric(c.threads, prometheus.GaugeValue, float64(stat.NumThreads), sandbox, name)
	if rollup, err := p.ProcSMapsRollup(); err == nil {
		ch <- prometheus.MustNewConstMetric(c.pss, prometheus.GaugeValue, float64(rollup.Pss), sandbox, name)
	}
	if n, err := p.FileDescriptorsLen(); err == nil {
		ch <- prometheus.MustNewConstMetric(c.fds, prometheus.GaugeValue, float64(n), sandbox, name)
	}
}
