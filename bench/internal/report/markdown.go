package report

import (
	"fmt"
	"sort"
	"strings"

	"github.com/vessel-containers/vessel/bench/internal/stats"
)

// Markdown renders the results as the tables docs/benchmarks.md shows.
func Markdown(r *Results) string {
	var b strings.Builder
	mode := "full"
	if r.Quick {
		mode = "quick"
	}
	fmt.Fprintf(&b, "# Vessel benchmark results\n\n%s run of %s, %.0f s, N = %d; figures are median (min–max).\n\n",
		mode, r.Started.UTC().Format("2006-01-02 15:04 UTC"), r.Seconds, r.Runs)
	writeSummary(&b, r)
	writeBreakdown(&b, r)
	writeComparison(&b, r)
	writeMemory(&b, r)
	writeWarm(&b, r)
	writeDensity(&b, r)
	writeParallel(&b, r)
	writeIO(&b, r)
	writeStdio(&b, r)
	writeNet(&b, r)
	writeRunsc(&b, r)
	writeMachine(&b, r)
	writeConditions(&b, r)
	if len(r.Errors) > 0 {
		b.WriteString("## Errors\n\n")
		keys := make([]string, 0, len(r.Errors))
		for k := range r.Errors {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "- %s: %s\n", k, strings.ReplaceAll(r.Errors[k], "\n", " "))
		}
		b.WriteString("\n")
	}
	return b.String()
}

// Sec formats seconds: milliseconds below 1 s.
func Sec(s float64) string {
	if s < 1 {
		return fmt.Sprintf("%.0f ms", s*1000)
	}
	return fmt.Sprintf("%.2f s", s)
}

func secSummary(s stats.Summary) string {
	if s.N == 0 {
		return "–"
	}
	if s.N == 1 {
		return Sec(s.Median)
	}
	return fmt.Sprintf("%s (%s–%s)", Sec(s.Median), Sec(s.Min), Sec(s.Max))
}

func mibSummary(s stats.Summary) string {
	if s.N == 0 {
		return "–"
	}
	if s.N == 1 || s.Min == s.Max {
		return fmt.Sprintf("%.0f MiB", s.Median)
	}
	return fmt.Sprintf("%.0f MiB (%.0f–%.0f)", s.Median, s.Min, s.Max)
}

func ratio(a, b float64) string {
	if a <= 0 || b <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

func writeSummary(b *strings.Builder, r *Results) {
	b.WriteString("## Summary\n\nThe runsc column is gVisor through its own OCI CLI (see its section), the others go through containerd.\n\n| Figure | Vessel | runc | runsc | Vessel / runc | Vessel / floor |\n|---|---|---|---|---|---|\n")
	floor := 0.0
	if r.Floor != nil && r.Floor.Boot.N > 0 {
		floor = r.Floor.Boot.Median
		fmt.Fprintf(b, "| Bare-VM floor (QEMU + kernel boot + power-off) | %s | | | | 1.00× |\n", secSummary(r.Floor.Boot))
	}
	if c := r.Cold; c != nil {
		rows := []struct {
			name   string
			vs, rs stats.Summary
			runsc  string
		}{
			{"Cold start `ctr run --rm … true`", c.Vessel.True, c.Runc.True, runscFigure(r, "cold", 0)},
			{"Cold start `ctr run --rm … echo`, until output", c.Vessel.EchoOutput, c.Runc.EchoOutput, ""},
			{"Cold start `ctr run --rm … echo`, until exit", c.Vessel.EchoTotal, c.Runc.EchoTotal, ""},
		}
		for _, row := range rows {
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s |\n", row.name, secSummary(row.vs), secSummary(row.rs), row.runsc,
				ratio(row.vs.Median, row.rs.Median), ratio(row.vs.Median, floor))
		}
	}
	if w := r.Warm; w != nil {
		for _, m := range w.Modes {
			fmt.Fprintf(b, "| Warm start `ctr run --rm … true`, %s | %s | %s | | %s | %s |\n", m.Name, secSummary(m.True), secSummary(w.Runc),
				ratio(m.True.Median, w.Runc.Median), ratio(m.True.Median, floor))
		}
	}
	if e := r.Exec; e != nil {
		fmt.Fprintf(b, "| Exec latency `ctr task exec … true` | %s | %s | %s | %s | |\n", secSummary(e.Vessel), secSummary(e.Runc), runscFigure(r, "exec", 0), ratio(e.Vessel.Median, e.Runc.Median))
	}
	if m := r.Memory; m != nil {
		for _, p := range m.Points {
			if p.Runtime != Vessel {
				continue
			}
			rp := findPoint(m, Runc, p.Sandboxes)
			fmt.Fprintf(b, "| PSS per idle sandbox, %d running | %s | %s | %s | %s | |\n", p.Sandboxes, mibSummary(p.PerSandbox), mibSummary(rp.PerSandbox), runscFigure(r, "pss", p.Sandboxes), ratio(p.PerSandbox.Median, rp.PerSandbox.Median))
		}
		for _, p := range m.Points {
			if p.Runtime == Vessel && p.GuestUsed.N > 0 {
				fmt.Fprintf(b, "| Guest memory used (MemTotal − MemAvailable), %d running | %s of %.0f MiB | | | | |\n", p.Sandboxes, mibSummary(p.GuestUsed), p.GuestTotalMiB)
			}
		}
	}
	if d := r.Density; d != nil {
		fmt.Fprintf(b, "| Density: idle sandboxes started (limit %d) | %d (%s) | | | | |\n", d.Limit, d.Started, d.StopReason)
	}
	if p := r.Parallel; p != nil {
		fmt.Fprintf(b, "| Parallel create: %d at once, sandboxes/minute | %.0f (%s) | %.0f (%s) | | %s | |\n",
			p.Vessel.N, p.Vessel.PerMinute, Sec(p.Vessel.Seconds), p.Runc.PerMinute, Sec(p.Runc.Seconds), ratio(p.Vessel.PerMinute, p.Runc.PerMinute))
	}
	b.WriteString("\n")
}

func findPoint(m *Memory, runtime string, n int) MemoryPoint {
	for _, p := range m.Points {
		if p.Runtime == runtime && p.Sandboxes == n {
			return p
		}
	}
	return MemoryPoint{}
}

func writeBreakdown(b *strings.Builder, r *Results) {
	if r.Cold == nil || len(r.Cold.Breakdown) == 0 {
		return
	}
	total := 0.0
	for _, p := range r.Cold.Breakdown {
		total += p.Seconds.Median
	}
	fmt.Fprintf(b, "## Where Vessel's cold start goes (`true`, %d runs)\n\n", r.Cold.BreakdownRuns)
	b.WriteString("From the shim's debug lines in containerd's log and the guest's boot clock. Phases are contiguous; medians need not add up exactly to the median total. ")
	b.WriteString("The guest clock starts with its kernel, so the firmware (loading kernel and initramfs) is counted with the agent handshake.\n\n")
	b.WriteString("| Phase | Median | Min–max | Share |\n|---|---|---|---|\n")
	for _, p := range r.Cold.Breakdown {
		share := 0.0
		if total > 0 {
			share = p.Seconds.Median / total * 100
		}
		fmt.Fprintf(b, "| %s | %s | %s–%s | %.0f %% |\n", p.Name, Sec(p.Seconds.Median), Sec(p.Seconds.Min), Sec(p.Seconds.Max), share)
	}
	fmt.Fprintf(b, "| **sum of medians** | %s | | |\n\n", Sec(total))
}

func writeMemory(b *strings.Builder, r *Results) {
	m := r.Memory
	if m == nil || len(m.Points) == 0 {
		return
	}
	fmt.Fprintf(b, "## Memory (PSS from smaps_rollup, after %.0f s idle)\n\n", m.SettleSeconds)
	b.WriteString("| Runtime | Sandboxes | PSS per sandbox | of which VMM | of which shim | Total PSS | Guest used |\n|---|---|---|---|---|---|---|\n")
	for _, p := range m.Points {
		fmt.Fprintf(b, "| %s | %d | %s | %s | %s | %.0f MiB | %s |\n", p.Runtime, p.Sandboxes, mibSummary(p.PerSandbox),
			mibSummary(p.VMM), mibSummary(p.Shim), p.TotalMiB, mibSummary(p.GuestUsed))
	}
	b.WriteString("\n")
	for _, p := range m.Points {
		if k := p.KSM; k != nil {
			fmt.Fprintf(b, "%s: the same %d sandboxes after the host's KSM merged their pages (%s for %d full scans at %d pages per wake-up); "+
				"%d pages shared, %d sharing (%.0f MiB saved host-wide); ksmd then used %.3f cores at the host's %d pages per wake-up.\n\n",
				p.Runtime, p.Sandboxes, Sec(k.MergeSeconds), k.MergeScans, k.MergePagesToScan, k.PagesShared, k.PagesSharing,
				float64(k.PagesSharing)*4/1024, k.KsmdCores, k.PagesToScan)
		}
	}
}

func writeDensity(b *strings.Builder, r *Results) {
	d := r.Density
	if d == nil {
		return
	}
	b.WriteString("## Density\n\n")
	fmt.Fprintf(b, "Started %d of %d idle Vessel sandboxes one after another (stopped: %s).\n\n", d.Started, d.Limit, d.StopReason)
	b.WriteString("| Figure | Value |\n|---|---|\n")
	fmt.Fprintf(b, "| Total PSS (shims + VMMs) | %.0f MiB |\n", d.TotalPSSMiB)
	fmt.Fprintf(b, "| PSS per sandbox | %s |\n", mibSummary(d.PerSandbox))
	fmt.Fprintf(b, "| Host CPU busy while idle (%.0f s, all cores, everything on the host) | %.0f %% |\n", d.IdleSeconds, d.HostBusy*100)
	fmt.Fprintf(b, "| CPU used by the idle sandboxes | %.2f cores |\n", d.SandboxCores)
	fmt.Fprintf(b, "| Host MemAvailable with all running | %.0f MiB |\n", d.HostAvailableMiB)
	if n := len(d.StartSeconds); n > 0 {
		fmt.Fprintf(b, "| `ctr run -d` time, first / last | %s / %s |\n", Sec(d.StartSeconds[0]), Sec(d.StartSeconds[n-1]))
	}
	if n := len(d.ExecSeconds); n > 0 {
		fmt.Fprintf(b, "| Exec latency, first / last | %s / %s |\n", Sec(d.ExecSeconds[0]), Sec(d.ExecSeconds[n-1]))
	}
	b.WriteString("\n")
}

func writeParallel(b *strings.Builder, r *Results) {
	p := r.Parallel
	if p == nil {
		return
	}
	b.WriteString("## Parallel create\n\n| Runtime | At once | Until all started | Sandboxes/minute | Each `ctr run -d` |\n|---|---|---|---|---|\n")
	for _, row := range []struct {
		name string
		run  ParallelRun
	}{{Vessel, p.Vessel}, {Runc, p.Runc}} {
		if row.run.N == 0 {
			continue
		}
		fmt.Fprintf(b, "| %s | %d | %s | %.0f | %s |\n", row.name, row.run.N, Sec(row.run.Seconds), row.run.PerMinute, secSummary(row.run.Each))
	}
	b.WriteString("\n")
}

func writeMachine(b *strings.Builder, r *Results) {
	m, v := r.Machine, r.VM
	b.WriteString("## Machine and configuration\n\n| | |\n|---|---|\n")
	fmt.Fprintf(b, "| Accelerator | %s |\n", m.Accelerator)
	fmt.Fprintf(b, "| CPUs | %d × %s |\n", m.CPUs, m.CPUModel)
	fmt.Fprintf(b, "| Memory | %.1f GiB |\n", m.MemoryGiB)
	fmt.Fprintf(b, "| Host kernel | %s |\n", m.Kernel)
	fmt.Fprintf(b, "| QEMU | %s |\n", m.QEMU)
	fmt.Fprintf(b, "| containerd / runc | %s / %s |\n", m.Containerd, m.Runc)
	fmt.Fprintf(b, "| Vessel | %s |\n", m.VesselVersion)
	fmt.Fprintf(b, "| Guest kernel / initramfs | %s / %.1f MiB |\n", m.GuestKernel, m.GuestInitramfsMiB)
	tb := fmt.Sprintf("%d MiB", v.TBSizeMiB)
	if v.TBSizeMiB == 0 {
		tb = "the driver's default (64 MiB without vCPU hot-plug)"
	}
	fmt.Fprintf(b, "| VM | %s, %d vCPU, %d MiB, TCG tb-size %s, %s |\n", v.Machine, v.VCPUs, v.MemoryMiB, tb, v.SharedFS)
	fmt.Fprintf(b, "| Configuration | %s |\n\n", v.ConfigFile)
}

func writeConditions(b *strings.Builder, r *Results) {
	if len(r.Conditions) == 0 {
		return
	}
	b.WriteString("## Conditions\n\nThe host is shared: load from other work makes figures noisy.\n\n| Measure | Took | Load avg before → after | Host CPU busy |\n|---|---|---|---|\n")
	for _, c := range r.Conditions {
		fmt.Fprintf(b, "| %s | %.0f s | %.2f → %.2f | %.0f %% |\n", c.Measure, c.Seconds, c.LoadBefore, c.LoadAfter, c.HostBusy*100)
	}
	b.WriteString("\n")
}

// writeComparison renders an A/B run: the default configuration (A) against the second
// one (B), measured interleaved.
func writeComparison(b *strings.Builder, r *Results) {
	if r.VMB == nil {
		return
	}
	fmt.Fprintf(b, "## A/B comparison\n\nA is %s, B is %s; runs were interleaved.\n\n", r.VM.ConfigFile, r.VMB.ConfigFile)
	b.WriteString("| Figure | A | B | B − A |\n|---|---|---|---|\n")
	row := func(name string, a, bb stats.Summary, unit func(stats.Summary) string, diff func(float64) string) {
		if a.N == 0 || bb.N == 0 {
			return
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s |\n", name, unit(a), unit(bb), diff(bb.Median-a.Median))
	}
	secDiff := func(d float64) string {
		if d < 0 {
			return "−" + Sec(-d)
		}
		return "+" + Sec(d)
	}
	mibDiff := func(d float64) string { return fmt.Sprintf("%+.1f MiB", d) }
	if f := r.Floor; f != nil && f.BootB != nil {
		row("Bare-VM floor", f.Boot, *f.BootB, secSummary, secDiff)
	}
	if c := r.Cold; c != nil && c.VesselB != nil {
		row("Cold start `true`", c.Vessel.True, c.VesselB.True, secSummary, secDiff)
		row("Cold start `echo`, until output", c.Vessel.EchoOutput, c.VesselB.EchoOutput, secSummary, secDiff)
		phasesB := map[string]stats.Summary{}
		for _, p := range c.BreakdownB {
			phasesB[p.Name] = p.Seconds
		}
		for _, p := range c.Breakdown {
			if pb, ok := phasesB[p.Name]; ok {
				row("  phase: "+p.Name, p.Seconds, pb, secSummary, secDiff)
			}
		}
	}
	if m := r.Memory; m != nil {
		for _, p := range m.Points {
			if p.Runtime != Vessel {
				continue
			}
			pb := findPoint(m, VesselB, p.Sandboxes)
			row(fmt.Sprintf("PSS per idle sandbox, %d running", p.Sandboxes), p.PerSandbox, pb.PerSandbox, mibSummary, mibDiff)
			row(fmt.Sprintf("  of which VMM, %d running", p.Sandboxes), p.VMM, pb.VMM, mibSummary, mibDiff)
		}
	}
	b.WriteString("\n")
}

func writeWarm(b *strings.Builder, r *Results) {
	w := r.Warm
	if w == nil {
		return
	}
	b.WriteString("## Warm start (VM factory)\n\n| Factory | `true` | Runs from the factory | Booted cold (why) |\n|---|---|---|---|\n")
	for _, m := range w.Modes {
		why := "–"
		if m.ColdFallbacks > 0 {
			why = fmt.Sprintf("%d (%s)", m.ColdFallbacks, m.FallbackWhy)
		}
		fmt.Fprintf(b, "| %s | %s | %d | %s |\n", m.Name, secSummary(m.True), m.True.N, why)
	}
	fmt.Fprintf(b, "\nrunc, interleaved: %s.\n\n", secSummary(w.Runc))
	if p := w.Memory; p != nil {
		fmt.Fprintf(b, "%d idle sandboxes restored from one template: %s per sandbox (VMM %s, shim %s), %.0f MiB in all.\n\n",
			p.Sandboxes, mibSummary(p.PerSandbox), mibSummary(p.VMM), mibSummary(p.Shim), p.TotalMiB)
	}
	if p := w.MemoryKSM; p != nil && p.KSM != nil {
		fmt.Fprintf(b, "The same %d with the host's KSM on: %s per sandbox (VMM %s, shim %s), %.0f MiB in all; ksmd %.3f cores at %d pages per wake-up.\n\n",
			p.Sandboxes, mibSummary(p.PerSandbox), mibSummary(p.VMM), mibSummary(p.Shim), p.TotalMiB, p.KSM.KsmdCores, p.KSM.PagesToScan)
	}
}
