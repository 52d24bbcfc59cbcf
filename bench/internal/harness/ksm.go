package harness

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/containerd/log"

	"github.com/vessel-containers/vessel/bench/internal/ksm"
	"github.com/vessel-containers/vessel/bench/internal/procfs"
	"github.com/vessel-containers/vessel/bench/internal/report"
	"github.com/vessel-containers/vessel/bench/internal/stats"
)

// Settings of the KSM variant: ksmd scans faster while the sandboxes' pages merge, then
// runs at the host's own rate while its CPU is sampled.
const (
	ksmMergePagesToScan = 2000
	ksmMergeScans       = 3
	ksmMergeTimeout     = 5 * time.Minute
)

// ksmPoint turns the host's KSM on with the sandboxes ids of rt running, waits until ksmd
// has merged what it can, samples ksmd's CPU at the host's own scan rate and reads the
// sandboxes' PSS again. The host's KSM settings are put back before it returns.
func (e *env) ksmPoint(ctx context.Context, rt runtimeSpec, ids []string, pids map[string]int) (p report.MemoryPoint, retErr error) {
	p = report.MemoryPoint{Runtime: ksmName(rt), Sandboxes: len(ids)}
	k, err := ksm.New(ksm.Dir)
	if err != nil {
		return p, err
	}
	hostPages, err := k.PagesToScan()
	if err != nil {
		return p, err
	}
	before, err := k.Counters()
	if err != nil {
		return p, err
	}
	restore, err := k.Enable()
	if err != nil {
		return p, err
	}
	defer func() {
		if err := restore(); err != nil {
			retErr = errors.Join(retErr, fmt.Errorf("restore the host's KSM settings: %w", err))
		}
	}()
	if err := k.SetPagesToScan(ksmMergePagesToScan); err != nil {
		return p, err
	}
	begin := time.Now()
	wctx, cancel := context.WithTimeout(ctx, ksmMergeTimeout)
	_, err = k.WaitScans(wctx, before.FullScans, ksmMergeScans, time.Second)
	cancel()
	if err != nil {
		return p, err
	}
	st := &report.KSM{MergeSeconds: time.Since(begin).Seconds(), MergeScans: ksmMergeScans, MergePagesToScan: ksmMergePagesToScan, PagesToScan: hostPages}
	log.G(ctx).Infof("memory: KSM merged in %s", report.Sec(st.MergeSeconds))
	if err := k.SetPagesToScan(hostPages); err != nil {
		return p, err
	}
	cpu0, begin := ksmdCPU(), time.Now()
	if err := sleep(ctx, e.opts.IdleWindow); err != nil {
		return p, err
	}
	st.KsmdCores = (ksmdCPU() - cpu0).Seconds() / time.Since(begin).Seconds()
	c, err := k.Counters()
	if err != nil {
		return p, err
	}
	st.PagesShared, st.PagesSharing = c.PagesShared, c.PagesSharing
	var per, vmm, shim []float64
	for _, id := range ids {
		f, err := footprintOf(rt, pids[id])
		if err != nil {
			return p, fmt.Errorf("footprint of %s: %w", id, err)
		}
		per = append(per, stats.MiB(f.total))
		vmm = append(vmm, stats.MiB(f.vmm))
		shim = append(shim, stats.MiB(f.shim))
		p.TotalMiB += stats.MiB(f.total)
	}
	p.PerSandbox, p.VMM, p.Shim = stats.Of(per), stats.Of(vmm), stats.Of(shim)
	p.KSM = st
	return p, nil
}

// ksmName names the memory point of rt's sandboxes read with the host's KSM on.
func ksmName(rt runtimeSpec) string { return rt.name + "-ksm" }

// ksmdCPU is the CPU time of the host's ksmd thread (0 when there is none).
func ksmdCPU() time.Duration {
	procs, err := procfs.ByComm("ksmd")
	if err != nil {
		return 0
	}
	var sum time.Duration
	for _, p := range procs {
		sum += p.CPU
	}
	return sum
}
