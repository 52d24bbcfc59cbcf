package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/log"
	"github.com/sirupsen/logrus"

	"github.com/vessel-containers/vessel/bench/internal/floor"
	"github.com/vessel-containers/vessel/bench/internal/report"
	"github.com/vessel-containers/vessel/bench/internal/shimlog"
	"github.com/vessel-containers/vessel/bench/internal/stats"
	"github.com/vessel-containers/vessel/internal/config"
	"github.com/vessel-containers/vessel/internal/hypervisor"
)

// floor boots the bare VM Runs times with Vessel's driver and VM configuration (and, in
// A/B mode, alternately with the second configuration's).
func (e *env) floor(ctx context.Context) error {
	initrd := filepath.Join(e.work, "floor-initramfs.img")
	if err := floor.WriteInitramfs(initrd); err != nil {
		return err
	}
	cfgs := []*config.Config{e.cfg}
	if e.cfgB != nil {
		cfgs = append(cfgs, e.cfgB)
	}
	// The driver warns about every exit it did not ask for; a power-off is the point here.
	quiet := logrus.New()
	quiet.SetLevel(logrus.ErrorLevel)
	qctx := log.WithLogger(ctx, logrus.NewEntry(quiet))

	boots := make([][]time.Duration, len(cfgs))
	defer func() {
		f := &report.Floor{Boot: stats.Seconds(boots[0])}
		if len(boots) > 1 {
			b := stats.Seconds(boots[1])
			f.BootB = &b
		}
		e.res.Floor = f
	}()
	for i := range e.opts.Runs {
		for j, cfg := range cfgs {
			d, err := floorBoot(qctx, cfg, e.work, initrd, i)
			if err != nil {
				return err
			}
			boots[j] = append(boots[j], d)
		}
	}
	return nil
}

func floorBoot(ctx context.Context, c *config.Config, work, initrd string, i int) (time.Duration, error) {
	cfg, err := vmConfig(c)
	if err != nil {
		return 0, err
	}
	dir, err := os.MkdirTemp(work, "f")
	if err != nil {
		return 0, fmt.Errorf("floor state dir: %w", err)
	}
	defer os.RemoveAll(dir)
	share := filepath.Join(dir, "share")
	if err := os.Mkdir(share, 0o755); err != nil {
		return 0, fmt.Errorf("floor share dir: %w", err)
	}
	cfg.ID = fmt.Sprintf("floor-%d", i)
	cfg.StateDir = dir
	cfg.Initrd = initrd
	// Vessel shares the rootfs over 9p unless virtio-fs is configured; the floor uses 9p
	// in both cases (a virtiofsd would be a helper daemon, not part of the VM).
	cfg.SharedFS = hypervisor.SharedFS9P
	cfg.SharedDir = share
	cfg.ShareTag = "floor"
	return floor.Boot(ctx, c.Hypervisor.Driver, cfg)
}

// coldSamples are one runtime's cold starts and, for Vessel, their phases.
type coldSamples struct {
	trueRun, echoOut, echoTotal []time.Duration
	phases                      map[string][]time.Duration
	breakdowns                  int
}

func (c *coldSamples) summary() report.ColdRuntime {
	return report.ColdRuntime{True: stats.Seconds(c.trueRun), EchoOutput: stats.Seconds(c.echoOut), EchoTotal: stats.Seconds(c.echoTotal)}
}

func (c *coldSamples) breakdown() []report.PhaseSummary {
	var out []report.PhaseSummary
	for _, name := range shimlog.Phases {
		if d, ok := c.phases[name]; ok {
			out = append(out, report.PhaseSummary{Name: name, Seconds: stats.Seconds(d)})
		}
	}
	return out
}

// cold runs `ctr run --rm` of `true` and of `echo`, Runs times each, alternating the
// runtimes, and splits Vessel's `true` runs into phases from the shim's log lines.
func (e *env) cold(ctx context.Context) error {
	rts := e.runtimes()
	got := map[string]*coldSamples{}
	for _, rt := range rts {
		got[rt.name] = &coldSamples{phases: map[string][]time.Duration{}}
	}
	defer func() {
		c := &report.Cold{
			Vessel: got[report.Vessel].summary(), Runc: got[report.Runc].summary(),
			Breakdown: got[report.Vessel].breakdown(), BreakdownRuns: got[report.Vessel].breakdowns,
		}
		if b, ok := got[report.VesselB]; ok {
			s := b.summary()
			c.VesselB, c.BreakdownB = &s, b.breakdown()
		}
		e.res.Cold = c
	}()

	var breakdownErr error
	// A failed run is recorded and the measure goes on, up to maxColdFailures: one lost
	// output must not cost the whole measure, but it must not go unnoticed either.
	var failed []error
	fail := func(err error) error {
		log.G(ctx).WithError(err).Warn("cold start run failed")
		failed = append(failed, err)
		if len(failed) >= maxColdFailures || ctx.Err() != nil {
			return errors.Join(failed...)
		}
		return nil
	}
	for i := range e.opts.Runs {
		for _, rt := range rts {
			id := fmt.Sprintf("cold-%s-true-%d", rt.name, i)
			offset := e.logOffset()
			t0 := time.Now()
			total, _, err := e.runRm(ctx, rt, id, "", "true")
			if err != nil {
				if err := fail(err); err != nil {
					return err
				}
				continue
			}
			g := got[rt.name]
			g.trueRun = append(g.trueRun, total)
			if rt.typ != VesselRuntime {
				continue
			}
			ph, err := e.breakdown(ctx, offset, id, t0, t0.Add(total))
			if err != nil {
				// Keep measuring: the times are right even if the log is not.
				breakdownErr = err
				log.G(ctx).WithError(err).Warn("no cold-start breakdown")
				continue
			}
			g.breakdowns++
			for _, p := range ph {
				g.phases[p.Name] = append(g.phases[p.Name], p.Duration)
			}
		}
		for _, rt := range rts {
			id := fmt.Sprintf("cold-%s-echo-%d", rt.name, i)
			total, out, err := e.runRm(ctx, rt, id, "vessel-bench", "echo", "vessel-bench")
			if err != nil {
				if err := fail(err); err != nil {
					return err
				}
				continue
			}
			g := got[rt.name]
			g.echoOut = append(g.echoOut, out)
			g.echoTotal = append(g.echoTotal, total)
		}
		log.G(ctx).Infof("cold start run %d/%d done", i+1, e.opts.Runs)
	}
	if got[report.Vessel].breakdowns == 0 && breakdownErr != nil {
		failed = append(failed, fmt.Errorf("cold-start breakdown: %w", breakdownErr))
	}
	return errors.Join(failed...)
}

// maxColdFailures ends the cold-start measure early.
const maxColdFailures = 3

// logOffset is the current size of containerd's log.
func (e *env) logOffset() int64 {
	st, err := os.Stat(e.ctd.LogPath)
	if err != nil {
		return 0
	}
	return st.Size()
}

// breakdown reads the shim's lines for container id written since offset and splits the
// run into phases. containerd copies the shim's log asynchronously, so it waits a moment
// for the shim's last line (the Delete call) to arrive.
func (e *env) breakdown(ctx context.Context, offset int64, id string, t0, t1 time.Time) ([]shimlog.Phase, error) {
	deadline := time.Now().Add(3 * time.Second)
	for {
		lines, err := e.readLog(offset)
		if err != nil {
			return nil, err
		}
		if hasDelete(lines, id) || time.Now().After(deadline) {
			return shimlog.Breakdown(lines, id, t0, t1)
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return nil, err
		}
	}
}

func hasDelete(lines []shimlog.Line, id string) bool {
	for _, l := range lines {
		if l.Msg == "task api" && l.Fields["method"] == "Delete" && l.Fields["id"] == id && l.Fields["exec_id"] == "" {
			return true
		}
	}
	return false
}

func (e *env) readLog(offset int64) ([]shimlog.Line, error) {
	f, err := os.Open(e.ctd.LogPath)
	if err != nil {
		return nil, fmt.Errorf("containerd log: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return nil, fmt.Errorf("containerd log: %w", err)
	}
	data, err := io.ReadAll(f)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("containerd log: %w", err)
	}
	return shimlog.Parse(bytes.NewReader(data))
}
