package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/log"

	"github.com/vessel-containers/vessel/bench/internal/report"
)

// netBinary is the static network workload (bench/cmd/vesselnet) that `make build` puts
// next to the shim; the net measure bind-mounts it read-only into each container at
// netMountDir and runs its client on the host.
const (
	netBinary   = "vesselnet"
	netMountDir = "/vbnet"
	// netWait bounds how long the client waits for the server to listen (a VM booting on
	// a busy host); netClientSlack what the client may take beyond its four tests.
	netWait        = 3 * time.Minute
	netClientSlack = 2 * time.Minute
)

// netSetup is the network the net measure makes for itself: a network namespace pinned at
// /run/netns/<ns> (`ip netns add`) holding eth0, the peer of the veth hostIf in the
// benchmark's own namespace, and a /30 with hostAddr on hostIf and ctrAddr on eth0.
type netSetup struct {
	ns, hostIf        string
	hostAddr, ctrAddr string
}

// newNetSetup names the namespace, the veth and the /30 after pid, so that concurrent
// benchmark runs do not collide: 10.249.X.0/30 with X from pid.
func newNetSetup(pid int) netSetup {
	x := pid%250 + 1
	return netSetup{
		ns:       fmt.Sprintf("vbnet%d", pid),
		hostIf:   fmt.Sprintf("vbnh%d", pid%100000000),
		hostAddr: fmt.Sprintf("10.249.%d.1", x),
		ctrAddr:  fmt.Sprintf("10.249.%d.2", x),
	}
}

// path is the namespace's file, the container spec's network namespace path.
func (s netSetup) path() string { return "/run/netns/" + s.ns }

// describe is the setup as the results show it.
func (s netSetup) describe() string {
	return fmt.Sprintf("the container's network namespace holds one end of a veth pair (%s/30), the host the other (%s/30)", s.ctrAddr, s.hostAddr)
}

// commands are the `ip` invocations that make the setup, in order.
func (s netSetup) commands() [][]string {
	return [][]string{
		{"netns", "add", s.ns},
		{"link", "add", s.hostIf, "type", "veth", "peer", "name", "eth0", "netns", s.ns},
		{"addr", "add", s.hostAddr + "/30", "dev", s.hostIf},
		{"link", "set", s.hostIf, "up"},
		{"-n", s.ns, "addr", "add", s.ctrAddr + "/30", "dev", "eth0"},
		{"-n", s.ns, "link", "set", "eth0", "up"},
		{"-n", s.ns, "link", "set", "lo", "up"},
	}
}

// up makes the setup; on failure it removes what it made.
func (s netSetup) up(ctx context.Context) error {
	for _, args := range s.commands() {
		if err := runIP(ctx, args...); err != nil {
			return errors.Join(err, s.down(context.WithoutCancel(ctx)))
		}
	}
	return nil
}

// down removes the host's veth (its peer goes with it) and the namespace; what does not
// exist is not an error.
func (s netSetup) down(ctx context.Context) error {
	var errs []error
	if err := runIP(ctx, "link", "del", s.hostIf); err != nil && !ipNotFound(err) {
		errs = append(errs, err)
	}
	if err := runIP(ctx, "netns", "del", s.ns); err != nil && !ipNotFound(err) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func runIP(ctx context.Context, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// ipNotFound tells an `ip` error about a missing device or namespace.
func ipNotFound(err error) bool {
	s := err.Error()
	return strings.Contains(s, "Cannot find device") || strings.Contains(s, "No such file or directory")
}

// netSkipReason is why the net measure cannot run on this host, or "".
func netSkipReason() string {
	if os.Geteuid() != 0 {
		return "the net measure needs root (network namespaces, veths)"
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return "the net measure needs ip (apt-get install iproute2)"
	}
	return ""
}

// net runs the network workload Runs times against Vessel and runc, alternating them, each
// run in a new container in the measure's network namespace.
func (e *env) net(ctx context.Context) (retErr error) {
	res := &report.Net{}
	defer func() { e.res.Net = res }()
	if reason := netSkipReason(); reason != "" {
		res.Skipped = reason
		log.G(ctx).Warnf("net measure skipped: %s", reason)
		return nil
	}
	s := newNetSetup(os.Getpid())
	if err := s.up(ctx); err != nil {
		return err
	}
	defer func() {
		if err := s.down(context.WithoutCancel(ctx)); err != nil {
			retErr = errors.Join(retErr, err)
		}
	}()
	res.Setup = s.describe()
	rts := []runtimeSpec{e.vessel(), runcSpec}
	res.Runtimes = make([]report.NetRuntime, len(rts))
	for i, rt := range rts {
		res.Runtimes[i].Name = rt.name
	}
	defer func() {
		for i := range res.Runtimes {
			res.Runtimes[i].Summarize()
		}
	}()
	for run := range e.opts.Runs {
		for i, rt := range rts {
			r, err := e.netRun(ctx, s, rt, fmt.Sprintf("net-%s-%d", rt.name, run))
			if err != nil {
				return fmt.Errorf("%s: %w", rt.name, err)
			}
			res.Runtimes[i].Runs = append(res.Runtimes[i].Runs, r)
			log.G(ctx).Infof("net: %s run %d/%d: host→container %.0f Mbit/s, container→host %.0f Mbit/s, round trip %.0f µs, HTTP %.0f req/s",
				rt.name, run+1, e.opts.Runs, r.ToContainerMbits, r.FromContainerMbits, r.RTTMedianUs, r.HTTPPerSec)
		}
	}
	return nil
}

// netRun starts the server in a container of rt in the measure's namespace, runs the client
// on the host against it and removes the container, also when the client failed.
func (e *env) netRun(ctx context.Context, s netSetup, rt runtimeSpec, id string) (_ report.NetRun, retErr error) {
	flags := []string{
		"--mount", "type=bind,src=" + e.opts.ShimDir + ",dst=" + netMountDir + ",options=rbind:ro",
		"--with-ns", "network:" + s.path(),
	}
	rctx, cancel := context.WithTimeout(ctx, ctrTimeout)
	_, err := e.ctd.Ctr(rctx, e.runArgsWith(rt, "-d", id, flags, netMountDir+"/"+netBinary, "serve")...)
	cancel()
	if err != nil {
		return report.NetRun{}, err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ctrTimeout)
		defer cancel()
		if _, err := e.ctd.Ctr(cctx, "task", "delete", "-f", id); err != nil {
			retErr = errors.Join(retErr, err)
		}
		if _, err := e.ctd.Ctr(cctx, "containers", "delete", id); err != nil {
			retErr = errors.Join(retErr, err)
		}
	}()
	cctx, cancel := context.WithTimeout(ctx, netWait+4*e.opts.NetFor+netClientSlack)
	defer cancel()
	cmd := exec.CommandContext(cctx, filepath.Join(e.opts.ShimDir, netBinary), "client",
		"-host", s.ctrAddr, "-for", e.opts.NetFor.String(), "-wait", netWait.String())
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return report.NetRun{}, fmt.Errorf("%s client against %s: %w: %s", netBinary, id, err, strings.TrimSpace(stderr.String()))
	}
	return report.ParseNetRun(stdout.String())
}

// netPreflight checks what the net measure needs of the build.
func netPreflight(opts Options) error {
	if _, err := os.Stat(filepath.Join(opts.ShimDir, netBinary)); err != nil {
		return fmt.Errorf("the net measure's workload is missing (make build): %w", err)
	}
	return nil
}
