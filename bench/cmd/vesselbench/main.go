// Binary vesselbench runs Vessel's benchmarks: the bare-VM floor, cold start, warm start
// with the VM factory, exec latency, memory, density, parallel create throughput and
// file and block I/O (on runc's rootfs, Vessel's over 9p and virtio-fs, and a disk),
// stdio throughput, TCP and HTTP between the host and a container, Vessel's shim against runc's on a private containerd, and gVisor's
// runsc beside runc through their OCI CLIs, and writes results.json,
// results.md and chart.png. Vessel runs with the configuration given by -config (default:
// the built-in defaults), never the host's. Run it as root after `make build image`;
// `-quick` is the CI smoke test.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/log"
	"github.com/sirupsen/logrus"

	"github.com/vessel-containers/vessel/bench/internal/harness"
	"github.com/vessel-containers/vessel/internal/jail"
)

func main() {
	jail.Main() // the VMM's confinement: returns unless started as the jail entry
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "vesselbench:", err)
		os.Exit(1)
	}
}

func run() error {
	def, quick := harness.DefaultOptions(), harness.QuickOptions()
	var (
		quickFlag  = flag.Bool("quick", false, "smoke test: 1 run each, memory with 1 and 2 sandboxes, density limit 3, parallel 2 (what CI runs)")
		out        = flag.String("out", "_output/bench", "directory for results.json, results.md and chart.png")
		shimDir    = flag.String("shim-dir", "_output/bin", "directory holding containerd-shim-vessel-v2 (which containerd runs through a wrapper), vessel and the workloads vesselio and vesselnet")
		measures   = flag.String("measure", "all", "comma-separated measures to run: all or "+strings.Join(harness.Measures, ","))
		runs       = flag.Int("runs", 0, fmt.Sprintf("N for every repeated figure (default %d, quick %d)", def.Runs, quick.Runs))
		memCounts  = flag.String("memory-counts", "", fmt.Sprintf("idle sandbox counts for the memory measure (default %s, quick %s)", ints(def.MemoryCounts), ints(quick.MemoryCounts)))
		density    = flag.Int("density-limit", 0, fmt.Sprintf("most sandboxes the density measure starts (default %d, quick %d)", def.DensityLimit, quick.DensityLimit))
		execLimit  = flag.Duration("density-exec-limit", def.DensityExecLimit, "density stops when an exec takes longer")
		minAvail   = flag.Uint64("density-min-available", def.DensityMinAvailMiB, "density stops when the host's MemAvailable falls below this many MiB")
		parallel   = flag.Int("parallel", 0, fmt.Sprintf("sandboxes started at once (default %d, quick %d)", def.Parallel, quick.Parallel))
		settle     = flag.Duration("settle", 0, fmt.Sprintf("idle time before memory is read (default %s, quick %s)", def.Settle, quick.Settle))
		idleWindow = flag.Duration("idle-window", 0, fmt.Sprintf("host CPU sampling window with the density sandboxes idle (default %s, quick %s)", def.IdleWindow, quick.IdleWindow))
		ioRuns     = flag.Int("io-runs", 0, fmt.Sprintf("runs of the io workload per variant (default %d, quick %d)", def.IORuns, quick.IORuns))
		ioFiles    = flag.Int("io-files", 0, fmt.Sprintf("small files the io workload creates (default %d, quick %d)", def.IOFiles, quick.IOFiles))
		ioSize     = flag.Int("io-size", 0, fmt.Sprintf("MiB of the io workload's file (default %d, quick %d)", def.IOSizeMiB, quick.IOSizeMiB))
		ioRand     = flag.Duration("io-rand", 0, fmt.Sprintf("duration of each random io test (default %s, quick %s)", def.IORand, quick.IORand))
		stdioSize  = flag.Int("stdio-size", 0, fmt.Sprintf("MiB each transfer of the stdio measure moves (default %d, quick %d)", def.StdioSizeMiB, quick.StdioSizeMiB))
		netFor     = flag.Duration("net-for", 0, fmt.Sprintf("duration of each test of the net measure (default %s, quick %s)", def.NetFor, quick.NetFor))
		keepLog    = flag.Bool("keep-log", false, "copy containerd's log (with the shims' debug lines) into the output directory")
		cfgFile    = flag.String("config", "", "Vessel configuration file to benchmark (default: the built-in defaults; $VESSEL_CONFIG and /etc/vessel/configuration.toml are not read); it must leave the VM factory off")
		guestDir   = flag.String("guest-dir", "", "directory holding the guest vmlinux and initramfs.img (default: the configuration's hypervisor.kernel and hypervisor.initrd)")
		compare    = flag.String("compare-config", "", "A/B mode: also run floor, cold start, memory and stdio with this second Vessel configuration file, interleaved with the default runs")
		ksmFlag    = flag.Bool("ksm", false, "memory and warm: also read the Vessel sandboxes of the largest count, and those restored from one template, with the host's KSM on (turned on for each reading only; the host's settings are put back)")
		verbose    = flag.Bool("v", false, "debug logging")
	)
	flag.Parse()

	opts := def
	if *quickFlag {
		opts = quick
	}
	abs, err := filepath.Abs(*shimDir)
	if err != nil {
		return fmt.Errorf("-shim-dir: %w", err)
	}
	opts.Out, opts.ShimDir, opts.KeepLog, opts.KSM = *out, abs, *keepLog, *ksmFlag
	opts.DensityExecLimit, opts.DensityMinAvailMiB = *execLimit, *minAvail
	setInt(&opts.Runs, *runs)
	setInt(&opts.DensityLimit, *density)
	setInt(&opts.Parallel, *parallel)
	setDuration(&opts.Settle, *settle)
	setDuration(&opts.IdleWindow, *idleWindow)
	setInt(&opts.IORuns, *ioRuns)
	setInt(&opts.IOFiles, *ioFiles)
	setInt(&opts.IOSizeMiB, *ioSize)
	setDuration(&opts.IORand, *ioRand)
	setInt(&opts.StdioSizeMiB, *stdioSize)
	setDuration(&opts.NetFor, *netFor)
	if *memCounts != "" {
		counts, err := parseInts(*memCounts)
		if err != nil {
			return fmt.Errorf("-memory-counts: %w", err)
		}
		opts.MemoryCounts = counts
	}
	if opts.Config, err = absPath(*cfgFile); err != nil {
		return fmt.Errorf("-config: %w", err)
	}
	if opts.GuestDir, err = absPath(*guestDir); err != nil {
		return fmt.Errorf("-guest-dir: %w", err)
	}
	if opts.CompareConfig, err = absPath(*compare); err != nil {
		return fmt.Errorf("-compare-config: %w", err)
	}
	if *measures != "all" {
		opts.Measures = strings.Split(*measures, ",")
	}

	logger := logrus.New()
	logger.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, TimestampFormat: "15:04:05"})
	if *verbose {
		logger.SetLevel(logrus.DebugLevel)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx = log.WithLogger(ctx, logrus.NewEntry(logger))
	done := make(chan struct{})
	defer close(done) // runs before stop: a normal return is not reported as a signal
	go func() {       // owner: run; returns on the first signal or when run returns
		select {
		case <-ctx.Done():
			select {
			case <-done:
			default:
				log.G(ctx).Warn("interrupted: removing containers, shims, VMs and directories; please wait")
			}
		case <-done:
		}
	}()
	return harness.Run(ctx, opts)
}

// absPath is p made absolute (the shim resolves it from another directory), or "".
func absPath(p string) (string, error) {
	if p == "" {
		return "", nil
	}
	return filepath.Abs(p)
}

func setInt(dst *int, v int) {
	if v != 0 {
		*dst = v
	}
}

func setDuration(dst *time.Duration, v time.Duration) {
	if v != 0 {
		*dst = v
	}
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

func ints(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}
