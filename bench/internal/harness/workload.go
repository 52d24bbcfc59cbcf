package harness

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/containerd/log"

	"github.com/vessel-containers/vessel/bench/internal/procfs"
	"github.com/vessel-containers/vessel/bench/internal/report"
	"github.com/vessel-containers/vessel/bench/internal/stats"
)

// exec measures `ctr task exec … true` into a running idle container, Runs times per
// runtime after one warm-up exec that is not counted.
func (e *env) exec(ctx context.Context) error {
	res := &report.Exec{}
	defer func() { e.res.Exec = res }()
	for _, rt := range []runtimeSpec{e.vessel(), runcSpec} {
		id := "exec-" + rt.name
		if _, err := e.runDetached(ctx, rt, id, idleArgs...); err != nil {
			return err
		}
		if _, _, err := e.execIn(ctx, id, "warmup", "true"); err != nil {
			return err
		}
		var took []time.Duration
		for i := range e.opts.Runs {
			_, d, err := e.execIn(ctx, id, fmt.Sprintf("e%d", i), "true")
			if err != nil {
				return err
			}
			took = append(took, d)
		}
		if rt.name == report.Vessel {
			res.Vessel = stats.Seconds(took)
		} else {
			res.Runc = stats.Seconds(took)
		}
		if _, err := e.ctd.Ctr(ctx, "task", "delete", "-f", id); err != nil {
			return err
		}
		if _, err := e.ctd.Ctr(ctx, "containers", "delete", id); err != nil {
			return err
		}
	}
	return nil
}

// footprint is one sandbox's memory.
type footprint struct {
	total, vmm, shim uint64
}

// hostRoot is the process whose tree holds a sandbox's host processes, from the pid
// containerd reports for its task: for Vessel that pid is the task's host stand-in, whose
// parent is the shim (its tree holds QEMU, any helper daemon and the stand-ins); for runc
// it is the container's init.
func hostRoot(rt runtimeSpec, pid int) (int, error) {
	if rt.typ == RuncRuntime {
		return pid, nil
	}
	st, err := procfs.ReadStat(pid)
	if err != nil {
		return 0, err
	}
	return st.PPid, nil
}

// footprintOf reads the PSS of a sandbox from the pid containerd reports for its task:
// for Vessel the tree of the shim (hostRoot); for runc the container's init and its
// parent, the shim.
func footprintOf(rt runtimeSpec, pid int) (footprint, error) {
	var f footprint
	if rt.typ == RuncRuntime {
		st, err := procfs.ReadStat(pid)
		if err != nil {
			return f, err
		}
		shim, err := procfs.PSS(st.PPid)
		if err != nil {
			return f, err
		}
		ctr, _, err := procfs.TreePSS(pid)
		if err != nil {
			return f, err
		}
		return footprint{total: shim + ctr, vmm: ctr, shim: shim}, nil
	}
	shim, err := hostRoot(rt, pid)
	if err != nil {
		return f, err
	}
	tree, err := procfs.Tree(shim)
	if err != nil {
		return f, err
	}
	for _, p := range tree {
		v, err := procfs.PSS(p.Pid)
		if err != nil {
			continue // exited meanwhile
		}
		f.total += v
		if strings.HasPrefix(p.Comm, "qemu") {
			f.vmm += v
		} else {
			f.shim += v
		}
	}
	return f, nil
}

// memory starts n idle sandboxes for each count and runtime, lets them settle and reads
// their PSS and, for Vessel, the guest's own view of its memory.
func (e *env) memory(ctx context.Context) error {
	res := &report.Memory{SettleSeconds: e.opts.Settle.Seconds()}
	defer func() { e.res.Memory = res }()
	for _, n := range e.opts.MemoryCounts {
		for _, rt := range e.runtimes() {
			p, err := e.memoryPoint(ctx, rt, n)
			res.Points = append(res.Points, p)
			if err != nil {
				return err
			}
			if e.opts.KSM && rt.name == report.Vessel && n == slices.Max(e.opts.MemoryCounts) {
				p, err := e.ksmVariant(ctx, rt, n)
				res.Points = append(res.Points, p)
				if err != nil {
					return err
				}
			}
			if err := e.ctd.RemoveAllContainers(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// ksmVariant reads the n sandboxes memoryPoint left running again with the host's KSM on.
func (e *env) ksmVariant(ctx context.Context, rt runtimeSpec, n int) (report.MemoryPoint, error) {
	pids, err := e.taskPids(ctx)
	if err != nil {
		return report.MemoryPoint{Runtime: ksmName(rt), Sandboxes: n}, err
	}
	return e.ksmPoint(ctx, rt, memoryIDs(rt, n), pids)
}

// memoryIDs are the container ids of the memory measure's n sandboxes of rt.
func memoryIDs(rt runtimeSpec, n int) []string {
	ids := make([]string, n)
	for i := range n {
		ids[i] = fmt.Sprintf("mem-%s-%d-%d", rt.name, n, i)
	}
	return ids
}

func (e *env) memoryPoint(ctx context.Context, rt runtimeSpec, n int) (report.MemoryPoint, error) {
	p := report.MemoryPoint{Runtime: rt.name, Sandboxes: n}
	ids := memoryIDs(rt, n)
	for _, id := range ids {
		if _, err := e.runDetached(ctx, rt, id, idleArgs...); err != nil {
			return p, err
		}
	}
	log.G(ctx).Infof("memory: %d %s sandboxes running, idling %s", n, rt.name, e.opts.Settle)
	if err := sleep(ctx, e.opts.Settle); err != nil {
		return p, err
	}
	pids, err := e.taskPids(ctx)
	if err != nil {
		return p, err
	}
	var per, vmm, shim, guest []float64
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
	// Read the guest after the host figures: the exec itself touches memory.
	if rt.typ == VesselRuntime {
		for _, id := range ids {
			out, _, err := e.execIn(ctx, id, "meminfo", "cat", "/proc/meminfo")
			if err != nil {
				return p, err
			}
			total, avail, err := procfs.MemInfo([]byte(out))
			if err != nil {
				return p, fmt.Errorf("guest of %s: %w", id, err)
			}
			guest = append(guest, stats.MiB(total-avail))
			p.GuestTotalMiB = stats.MiB(total)
		}
	}
	p.PerSandbox, p.VMM, p.Shim, p.GuestUsed = stats.Of(per), stats.Of(vmm), stats.Of(shim), stats.Of(guest)
	return p, nil
}

// density starts idle Vessel sandboxes one after another until the limit, until an exec
// into the newest takes longer than the exec limit, until a start fails, or until the
// host runs low on memory; then it lets them idle and reads memory and CPU.
func (e *env) density(ctx context.Context) error {
	rt := e.vessel()
	d := &report.Density{Limit: e.opts.DensityLimit}
	defer func() { e.res.Density = d }()
	var ids []string
	for i := range e.opts.DensityLimit {
		if _, avail, err := procfs.HostMemInfo(); err == nil && avail < e.opts.DensityMinAvailMiB<<20 {
			d.StopReason = fmt.Sprintf("host MemAvailable %.0f MiB below %d MiB", stats.MiB(avail), e.opts.DensityMinAvailMiB)
			break
		}
		id := fmt.Sprintf("dens-%d", i)
		took, err := e.runDetached(ctx, rt, id, idleArgs...)
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			d.StopReason = "start failed: " + err.Error()
			break
		}
		ids = append(ids, id)
		d.StartSeconds = append(d.StartSeconds, took.Seconds())
		_, lat, err := e.execIn(ctx, id, "probe", "true")
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			d.StopReason = "exec failed: " + err.Error()
			break
		}
		d.ExecSeconds = append(d.ExecSeconds, lat.Seconds())
		if i%5 == 4 || i == e.opts.DensityLimit-1 {
			log.G(ctx).Infof("density: %d sandboxes, last start %s, exec %s", len(ids), report.Sec(took.Seconds()), report.Sec(lat.Seconds()))
		}
		if lat > e.opts.DensityExecLimit {
			d.StopReason = fmt.Sprintf("exec latency %s above %s", report.Sec(lat.Seconds()), e.opts.DensityExecLimit)
			break
		}
	}
	d.Started = len(ids)
	if d.StopReason == "" {
		d.StopReason = "limit reached"
	}
	if len(ids) == 0 {
		return errors.New("density: no sandbox started: " + d.StopReason)
	}
	if err := sleep(ctx, e.opts.Settle); err != nil {
		return err
	}
	return e.densityIdle(ctx, rt, ids, d)
}

// densityIdle samples host CPU and the sandboxes' own CPU over the idle window, then
// reads their memory.
func (e *env) densityIdle(ctx context.Context, rt runtimeSpec, ids []string, d *report.Density) error {
	pids, err := e.taskPids(ctx)
	if err != nil {
		return err
	}
	cpuOf := func() time.Duration {
		var sum time.Duration
		for _, id := range ids {
			root, err := hostRoot(rt, pids[id])
			if err != nil {
				continue // exited meanwhile
			}
			if c, err := procfs.TreeCPU(root); err == nil {
				sum += c
			}
		}
		return sum
	}
	host0, _ := procfs.ReadCPUTimes()
	own0, begin := cpuOf(), time.Now()
	if err := sleep(ctx, e.opts.IdleWindow); err != nil {
		return err
	}
	host1, _ := procfs.ReadCPUTimes()
	own1, window := cpuOf(), time.Since(begin)
	d.IdleSeconds = window.Seconds()
	d.HostBusy = procfs.BusyFraction(host0, host1)
	d.SandboxCores = (own1 - own0).Seconds() / window.Seconds()
	var per []float64
	for _, id := range ids {
		f, err := footprintOf(rt, pids[id])
		if err != nil {
			return fmt.Errorf("footprint of %s: %w", id, err)
		}
		per = append(per, stats.MiB(f.total))
		d.TotalPSSMiB += stats.MiB(f.total)
	}
	d.PerSandbox = stats.Of(per)
	if _, avail, err := procfs.HostMemInfo(); err == nil {
		d.HostAvailableMiB = stats.MiB(avail)
	}
	return nil
}

// parallel starts Parallel sandboxes at once per runtime and reports sandboxes per minute
// until all of them run.
func (e *env) parallel(ctx context.Context) error {
	res := &report.Parallel{}
	defer func() { e.res.Parallel = res }()
	for _, rt := range []runtimeSpec{e.vessel(), runcSpec} {
		run, err := e.parallelRun(ctx, rt)
		if rt.name == report.Vessel {
			res.Vessel = run
		} else {
			res.Runc = run
		}
		if err != nil {
			return err
		}
		if err := e.ctd.RemoveAllContainers(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (e *env) parallelRun(ctx context.Context, rt runtimeSpec) (report.ParallelRun, error) {
	n := e.opts.Parallel
	run := report.ParallelRun{N: n}
	took := make([]time.Duration, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	begin := time.Now()
	for i := range n {
		wg.Add(1)
		go func() { // owner: parallelRun, which waits for all of them
			defer wg.Done()
			took[i], errs[i] = e.runDetached(ctx, rt, fmt.Sprintf("par-%s-%d", rt.name, i), idleArgs...)
		}()
	}
	wg.Wait()
	run.Seconds = time.Since(begin).Seconds()
	if err := errors.Join(errs...); err != nil {
		return run, err
	}
	run.PerMinute = float64(n) / run.Seconds * 60
	run.Each = stats.Seconds(took)
	log.G(ctx).Infof("parallel: %d %s sandboxes in %s", n, rt.name, report.Sec(run.Seconds))
	return run, nil
}
