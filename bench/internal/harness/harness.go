// Package harness runs Vessel's benchmarks against a private containerd: the bare-VM
// floor, cold start, warm start with the VM factory, exec latency, memory, density and
// parallel create throughput, file and block I/O, stdio throughput and TCP and HTTP over a
// veth, Vessel's shim (io.containerd.vessel.v2) side by side with runc's
// (io.containerd.runc.v2), and gVisor's runsc beside runc through their OCI CLIs. Each measure cleans up after itself, also when it fails
// or the run is interrupted; the daemon's own Stop sweeps whatever is left.
package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/containerd/log"

	"github.com/vessel-containers/vessel/bench/internal/ctrd"
	"github.com/vessel-containers/vessel/bench/internal/ksm"
	"github.com/vessel-containers/vessel/bench/internal/procfs"
	"github.com/vessel-containers/vessel/bench/internal/report"
	"github.com/vessel-containers/vessel/internal/busyboximage"
	"github.com/vessel-containers/vessel/internal/config"
	"github.com/vessel-containers/vessel/internal/shimproto"
)

// Measure names, in the order they run.
const (
	MeasureFloor    = "floor"
	MeasureCold     = "cold"
	MeasureWarm     = "warm"
	MeasureExec     = "exec"
	MeasureMemory   = "memory"
	MeasureDensity  = "density"
	MeasureParallel = "parallel"
	MeasureIO       = "io"
	MeasureStdio    = "stdio"
	MeasureNet      = "net"
	MeasureRunsc    = "runsc"
)

// Measures lists every measure in run order.
var Measures = []string{MeasureFloor, MeasureCold, MeasureWarm, MeasureExec, MeasureMemory, MeasureDensity, MeasureParallel, MeasureIO, MeasureStdio, MeasureNet, MeasureRunsc}

// Runtime types containerd knows the shims by.
const (
	VesselRuntime = shimproto.RuntimeName
	RuncRuntime   = "io.containerd.runc.v2"
	shimBinary    = shimproto.BinaryName
)

// Options configure a run.
type Options struct {
	// Out receives results.json, results.md and chart.png.
	Out string
	// ShimDir holds containerd-shim-vessel-v2 (containerd runs it through a wrapper) and vessel.
	ShimDir string
	// Measures to run (default: all).
	Measures []string
	// Runs is N for every repeated figure.
	Runs int
	// MemoryCounts are the numbers of idle sandboxes the memory measure runs.
	MemoryCounts []int
	// DensityLimit and DensityExecLimit end the density measure.
	DensityLimit     int
	DensityExecLimit time.Duration
	// DensityMinAvailMiB stops density early when the host's MemAvailable drops below it.
	DensityMinAvailMiB uint64
	// Parallel is how many sandboxes the parallel measure starts at once.
	Parallel int
	// Settle is how long sandboxes idle before memory is read; IdleWindow how long host
	// CPU is sampled with the density sandboxes idle.
	Settle     time.Duration
	IdleWindow time.Duration
	// IORuns is how often the io measure runs its workload in each variant; IOFiles,
	// IOSizeMiB and IORand are the workload's small files, file size and the duration of
	// each random test.
	IORuns    int
	IOFiles   int
	IOSizeMiB int
	IORand    time.Duration
	// StdioSizeMiB is what each transfer of the stdio measure moves.
	StdioSizeMiB int
	// NetFor is the duration of each of the net measure's tests.
	NetFor time.Duration
	// Quick marks a smoke run (recorded in the results).
	Quick bool
	// KeepLog copies containerd's log (with the shims' lines) into Out.
	KeepLog bool
	// Config is the Vessel configuration file the benchmark runs with; empty for the
	// built-in defaults. $VESSEL_CONFIG and /etc/vessel/configuration.toml are never read.
	Config string
	// GuestDir, when set, holds the guest image (vmlinux, initramfs.img) that replaces the
	// configuration's hypervisor.kernel and hypervisor.initrd.
	GuestDir string
	// CompareConfig, when set, names a second Vessel configuration file: the floor, cold
	// start, memory and stdio measures then also run Vessel with it ("vessel-b"), interleaved with
	// the default runs, so that a change is compared under the same host conditions.
	CompareConfig string
	// KSM adds memory points: the Vessel sandboxes of the largest memory count, and those
	// restored from one template (warm), read again after the host's kernel samepage
	// merging has merged their pages (KSM is turned on for each reading only, and the
	// host's settings are put back).
	KSM bool
}

// QuickOptions are the smoke-test settings CI runs: one run each, small counts.
func QuickOptions() Options {
	return Options{
		Runs: 1, MemoryCounts: []int{1, 2}, DensityLimit: 3, DensityExecLimit: 5 * time.Second,
		DensityMinAvailMiB: 2048, Parallel: 2, Settle: 5 * time.Second, IdleWindow: 5 * time.Second, Quick: true,
		IORuns: 1, IOFiles: 100, IOSizeMiB: 4, IORand: time.Second, StdioSizeMiB: 4, NetFor: 2 * time.Second,
	}
}

// DefaultOptions are a full run's settings.
func DefaultOptions() Options {
	return Options{
		Runs: 10, MemoryCounts: []int{1, 10}, DensityLimit: 50, DensityExecLimit: 5 * time.Second,
		DensityMinAvailMiB: 2048, Parallel: 10, Settle: 20 * time.Second, IdleWindow: 15 * time.Second,
		IORuns: 3, IOFiles: 1000, IOSizeMiB: 64, IORand: 5 * time.Second, StdioSizeMiB: 32, NetFor: 5 * time.Second,
	}
}

// env is what the measures share.
type env struct {
	opts Options
	cfg  *config.Config
	// vesselConfig is cfg written to a file in work: every Vessel shim and vessel command
	// the benchmark starts reads it, whatever configuration the host has.
	vesselConfig string
	// cfgB is the A/B mode's second configuration (nil otherwise).
	cfgB  *config.Config
	ctd   *ctrd.Daemon
	image string
	res   *report.Results
	// work is a scratch directory (image archive, floor VM state).
	work string
	// begun counts the measures begun, for the progress line.
	begun int
}

// Run runs the selected measures and writes the results. A failing measure is recorded
// and the next one runs; the error returned joins every failure.
func Run(ctx context.Context, opts Options) (retErr error) {
	if err := opts.validate(); err != nil {
		return err
	}
	cfg, err := loadConfig(opts.Config, opts.GuestDir)
	if err != nil {
		return fmt.Errorf("vessel configuration: %w", err)
	}
	if err := preflight(cfg, opts); err != nil {
		return err
	}
	e := &env{opts: opts, cfg: cfg, res: &report.Results{
		Started: time.Now(), Quick: opts.Quick, Runs: opts.Runs, Errors: map[string]string{},
	}}
	e.res.Machine = describeMachine(ctx, cfg, opts.ShimDir)
	e.res.VM = describeVM(cfg, opts.Config)
	if opts.CompareConfig != "" {
		if e.cfgB, err = loadConfig(opts.CompareConfig, ""); err != nil {
			return fmt.Errorf("comparison configuration: %w", err)
		}
		if err := preflight(e.cfgB, opts); err != nil {
			return fmt.Errorf("comparison configuration: %w", err)
		}
		vmB := describeVM(e.cfgB, opts.CompareConfig)
		e.res.VMB = &vmB
	}

	if err := os.MkdirAll(opts.Out, 0o755); err != nil {
		return fmt.Errorf("output dir: %w", err)
	}
	if e.work, err = os.MkdirTemp("", "vbw"); err != nil {
		return fmt.Errorf("scratch dir: %w", err)
	}
	defer os.RemoveAll(e.work)
	e.vesselConfig = filepath.Join(e.work, "vessel.toml")
	if err := writeConfig(cfg, e.vesselConfig); err != nil {
		return err
	}

	var failures []error
	fail := func(measure string, err error) {
		log.G(ctx).WithError(err).Errorf("measure %s failed", measure)
		e.res.Errors[measure] = err.Error()
		failures = append(failures, fmt.Errorf("%s: %w", measure, err))
	}
	defer func() {
		e.res.Seconds = time.Since(e.res.Started).Seconds()
		paths, err := report.Write(opts.Out, e.res)
		if err != nil {
			failures = append(failures, err)
		}
		for _, p := range paths {
			log.G(ctx).Infof("wrote %s", p)
		}
		retErr = errors.Join(failures...)
	}()

	if slices.Contains(opts.Measures, MeasureFloor) {
		e.measure(ctx, MeasureFloor, e.floor, fail)
	}
	if !slices.ContainsFunc(opts.Measures, func(m string) bool { return m != MeasureFloor }) {
		return nil
	}
	if err := e.startContainerd(ctx); err != nil {
		fail("containerd", err)
		return nil
	}
	defer func() {
		// A failed measure's evidence is in the log (the shims' lines): keep it.
		if opts.KeepLog || len(failures) > 0 {
			if err := e.ctd.KeepLog(filepath.Join(opts.Out, "containerd.log")); err != nil {
				log.G(ctx).WithError(err).Warn("keep containerd log")
			}
		}
		// The cleanup must finish even when ctx was cancelled (Ctrl-C).
		if err := e.ctd.Stop(context.WithoutCancel(ctx)); err != nil {
			fail("cleanup", err)
		}
	}()
	for _, m := range []struct {
		name string
		fn   func(context.Context) error
	}{
		{MeasureCold, e.cold}, {MeasureWarm, e.warm}, {MeasureExec, e.exec}, {MeasureMemory, e.memory},
		{MeasureDensity, e.density}, {MeasureParallel, e.parallel}, {MeasureIO, e.io}, {MeasureStdio, e.stdio}, {MeasureNet, e.net}, {MeasureRunsc, e.runsc},
	} {
		if !slices.Contains(opts.Measures, m.name) {
			continue
		}
		if ctx.Err() != nil {
			fail(m.name, fmt.Errorf("not run: %w", context.Cause(ctx)))
			continue
		}
		e.measure(ctx, m.name, m.fn, fail)
	}
	return nil
}

// measure runs one measure, records the host's conditions around it and removes every
// container it left, whatever happened.
func (e *env) measure(ctx context.Context, name string, fn func(context.Context) error, fail func(string, error)) {
	e.begun++
	total := len(slices.DeleteFunc(slices.Clone(Measures), func(m string) bool { return !slices.Contains(e.opts.Measures, m) }))
	log.G(ctx).Infof("measure %d of %d: %s", e.begun, total, name)
	cond := report.Condition{Measure: name, LoadBefore: procfs.LoadAvg()}
	cpu0, _ := procfs.ReadCPUTimes()
	begin := time.Now()
	err := fn(ctx)
	if e.ctd != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
		if cerr := e.ctd.RemoveAllContainers(cctx); cerr != nil {
			err = errors.Join(err, fmt.Errorf("remove containers: %w", cerr))
		}
		cancel()
	}
	cpu1, _ := procfs.ReadCPUTimes()
	cond.Seconds = time.Since(begin).Seconds()
	cond.LoadAfter = procfs.LoadAvg()
	cond.HostBusy = procfs.BusyFraction(cpu0, cpu1)
	e.res.Conditions = append(e.res.Conditions, cond)
	if err != nil {
		fail(name, err)
	}
}

func (e *env) startContainerd(ctx context.Context) (retErr error) {
	// containerd finds the shim in wrapDir: a wrapper that runs the shim under test with
	// -sandbox-root in the daemon's directory, so that Vessel's shims keep their sandboxes
	// (sockets, logs, shares) there and the final sweep finds whatever an interrupted run
	// left. No shim starts before the wrapper is written: containers run after Start.
	wrapDir := filepath.Join(e.work, "shim")
	if err := os.Mkdir(wrapDir, 0o755); err != nil {
		return fmt.Errorf("shim wrapper dir: %w", err)
	}
	d, err := ctrd.Start(ctx, ctrd.Options{BinDir: wrapDir})
	if err != nil {
		return err
	}
	defer func() {
		if retErr != nil {
			if err := d.Stop(context.WithoutCancel(ctx)); err != nil {
				log.G(ctx).WithError(err).Warn("stop containerd after failed setup")
			}
			e.ctd = nil
		}
	}()
	e.ctd = d
	o := shimproto.Options{SandboxRoot: filepath.Join(d.Dir, "sb")}
	if err := shimproto.WriteWrapper(wrapDir, filepath.Join(e.opts.ShimDir, shimBinary), o); err != nil {
		return err
	}
	return e.importImage(ctx)
}

func (e *env) importImage(ctx context.Context) error {
	dir := filepath.Join(e.work, "image")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("image dir: %w", err)
	}
	archive, err := busyboximage.Build(dir, busyboximage.BenchRef)
	if err != nil {
		return err
	}
	if _, err := e.ctd.Ctr(ctx, "image", "import", archive); err != nil {
		return fmt.Errorf("import busybox image: %w", err)
	}
	e.image = busyboximage.BenchRef
	return nil
}

func (o *Options) validate() error {
	if len(o.Measures) == 0 {
		o.Measures = Measures
	}
	for _, m := range o.Measures {
		if !slices.Contains(Measures, m) {
			return fmt.Errorf("unknown measure %q: want one of %s", m, strings.Join(Measures, ", "))
		}
	}
	switch {
	case o.Runs < 1:
		return fmt.Errorf("runs %d: want at least 1", o.Runs)
	case o.Parallel < 1:
		return fmt.Errorf("parallel %d: want at least 1", o.Parallel)
	case o.DensityLimit < 1:
		return fmt.Errorf("density limit %d: want at least 1", o.DensityLimit)
	case slices.Contains(o.Measures, MeasureIO) && (o.IORuns < 1 || o.IOFiles < 1 || o.IOSizeMiB < 1 || o.IORand <= 0):
		return fmt.Errorf("io runs %d, files %d, size %d MiB, random test %s: want each above zero", o.IORuns, o.IOFiles, o.IOSizeMiB, o.IORand)
	case slices.Contains(o.Measures, MeasureStdio) && o.StdioSizeMiB < 1:
		return fmt.Errorf("stdio size %d MiB: want at least 1", o.StdioSizeMiB)
	case slices.Contains(o.Measures, MeasureNet) && o.NetFor <= 0:
		return fmt.Errorf("net test duration %s: want above zero", o.NetFor)
	case o.Out == "":
		return errors.New("no output directory")
	}
	for _, n := range o.MemoryCounts {
		if n < 1 {
			return fmt.Errorf("memory count %d: want at least 1", n)
		}
	}
	return nil
}

// preflight checks what the run needs, naming the command that provides a missing piece.
func preflight(cfg *config.Config, opts Options) error {
	if os.Geteuid() != 0 {
		return errors.New("the benchmark needs root (containerd, mounts, VMs)")
	}
	need := []struct{ path, fix string }{
		{cfg.Hypervisor.Path, "apt-get install qemu-system-x86"},
		{cfg.Hypervisor.Kernel, "make image"},
		{cfg.Hypervisor.Initrd, "make image"},
		{filepath.Join(opts.ShimDir, shimBinary), "make build"},
		{filepath.Join(opts.ShimDir, vesselBinary), "make build"},
	}
	for _, n := range need {
		if _, err := os.Stat(n.path); err != nil {
			return fmt.Errorf("%s is missing (%s): %w", n.path, n.fix, err)
		}
	}
	if opts.KSM && slices.Contains(opts.Measures, MeasureMemory) {
		if _, err := ksm.New(ksm.Dir); err != nil {
			return fmt.Errorf("-ksm needs a host kernel with KSM and a writable %s: %w", ksm.Dir, err)
		}
	}
	if slices.Contains(opts.Measures, MeasureIO) {
		if err := ioPreflight(opts); err != nil {
			return err
		}
	}
	if slices.Contains(opts.Measures, MeasureNet) {
		if err := netPreflight(opts); err != nil {
			return err
		}
	}
	for _, bin := range []string{"containerd", "ctr", "containerd-shim-runc-v2", "runc"} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("%s is not installed (apt-get install containerd runc): %w", bin, err)
		}
	}
	return nil
}
