//go:build linux

// Package agent is vessel-agent, the guest side of Vessel: PID 1 of the guest initramfs. It
// serves the ttrpc service of api/agent/v1 over a virtio-serial port (and vsock when the
// guest has it) and implements it: sandbox setup, containers and their processes through
// libcontainer (agent/libct), stdio as long-polled streams, cgroup statistics, file copies,
// CPU/memory hotplug and guest networking (agent/netcfg). As PID 1 it also reaps the orphans
// re-parented to it, leaving the processes it waits for itself alone (agent/reaper).
//
// Main is the whole program: boot the guest (agent/boot), then serve. It never returns; on a
// fatal error it powers the VM off so the host sees QEMU exit.
package agent

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"time"

	"github.com/containerd/log"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/vessel-containers/vessel/internal/agent/boot"
	"github.com/vessel-containers/vessel/internal/agent/guard"
	"github.com/vessel-containers/vessel/internal/agent/libct"
	"github.com/vessel-containers/vessel/internal/agent/netcfg"
	"github.com/vessel-containers/vessel/internal/agent/reaper"
	"github.com/vessel-containers/vessel/internal/version"
)

const (
	// PortName is the virtio-serial port the host connects to.
	PortName = "vessel.agent"
	// VsockPort is the vsock port the agent listens on when the guest has vsock.
	VsockPort = 1024
)

// Main boots the guest when running as PID 1 and serves the agent API. It does not return.
func Main() {
	// First thing: the kernel's part of the boot ends here (GetMetrics reports it).
	startedAt := boot.SinceBoot()
	format := &logrus.TextFormatter{FullTimestamp: true, TimestampFormat: "15:04:05.000000", DisableColors: true}
	logger := logrus.New()
	logger.SetOutput(os.Stderr) // the console: the host captures ttyS0
	logger.SetFormatter(format)
	// libcontainer's log: same format on the console; a start that records gets all of it.
	libct.SetupLog(os.Stderr, format, logrus.InfoLevel)
	ctx := log.WithLogger(context.Background(), logrus.NewEntry(logger).WithField("agent", "vessel"))

	pid1 := os.Getpid() == 1
	fatal := func(err error) {
		if pid1 {
			boot.PowerOff(ctx, err) // does not return
		}
		log.G(ctx).WithError(err).Error("vessel-agent: fatal error")
		os.Exit(1)
	}
	if pid1 {
		// Go's default action for these signals is to exit, and PID 1 exiting panics the
		// kernel. A handler (not SIG_IGN, which children would inherit) keeps us alive.
		sigs := make(chan os.Signal, 8)
		signal.Notify(sigs, unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2, unix.SIGPWR)
		// Lives as long as PID 1 does; a panic in it is logged and the signals stay handled
		// (Notify keeps queueing into sigs, nobody reads it: signals are then dropped).
		guard.Go(ctx, "signal logger", func() {
			for sig := range sigs {
				log.G(ctx).Warnf("PID 1 ignores signal %v", sig)
			}
		}, nil)
		if err := boot.Setup(ctx); err != nil {
			fatal(err)
		}
	}
	if cmdline, err := os.ReadFile("/proc/cmdline"); err == nil {
		if lvl, err := logrus.ParseLevel(boot.LogLevel(string(cmdline))); err == nil {
			logger.SetLevel(lvl)
			// libcontainer's lines on the console follow the asked level too.
			libct.SetLogLevel(lvl)
		}
	}
	if pid1 {
		if n, err := boot.LoadModulesFromOrder(ctx, "/", boot.ModulesOrderFile); err != nil {
			log.G(ctx).WithError(err).Warn("kernel modules")
		} else if n > 0 {
			log.G(ctx).Infof("loaded %d kernel modules", n)
		}
		if err := netcfg.LinkUp("lo"); err != nil {
			log.G(ctx).WithError(err).Warn("loopback")
		}
	}

	cfg := DefaultConfig()
	cfg.Vsock = VsockAvailable()
	cfg.StartedAt = startedAt
	if pid1 {
		// Lives as long as PID 1 does (ctx never ends); a panic in it is logged and
		// orphans are then left as zombies.
		cfg.Reaper = reaper.New("")
		guard.Go(ctx, "orphan reaper", func() { cfg.Reaper.Run(ctx) }, nil)
	}
	svc := NewService(cfg)
	ready := func() {
		up := boot.SinceBoot()
		svc.MarkReady(up)
		log.G(ctx).WithField("uptime", up.Round(time.Millisecond)).WithField("started", startedAt.Round(time.Millisecond)).
			Infof("vessel-agent %s ready", version.Version)
	}
	err := Serve(ctx, svc, ServeOptions{PortName: PortName, VsockPort: VsockPort, PortWait: 5 * time.Second}, ready)
	if err == nil {
		err = errors.New("serve returned")
	}
	fatal(err)
}
