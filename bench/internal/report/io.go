package report

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/vessel-containers/vessel/bench/internal/stats"
)

// IORun is one run of the I/O workload (bench/cmd/vesselio) in one directory: what it
// printed as its last line of output, a JSON object.
type IORun struct {
	// Dir is where the workload ran; FSType the file system there (from /proc/mounts).
	Dir    string `json:"dir"`
	FSType string `json:"fs_type"`
	// Files, SizeMiB and RandSeconds are the workload's parameters.
	Files       int     `json:"files"`
	SizeMiB     int     `json:"size_mib"`
	RandSeconds float64 `json:"rand_seconds"`
	// CreatePerSec is small files (4 KiB, 100 per directory) created per second, the
	// shape of an untar; FindPerSec entries walked and stat'ed per second right after;
	// DeletePerSec files removed per second.
	CreatePerSec float64 `json:"create_per_sec"`
	FindPerSec   float64 `json:"find_per_sec"`
	DeletePerSec float64 `json:"delete_per_sec"`
	// SeqWriteMiBs is a 1 MiB-block write of the file, fsync included; SeqReadMiBs a
	// 1 MiB-block read after the file's cached pages were dropped (fadvise DONTNEED).
	SeqWriteMiBs float64 `json:"seq_write_mib_s"`
	SeqReadMiBs  float64 `json:"seq_read_mib_s"`
	// RandWriteIOPS is 4 KiB writes at random offsets with an fsync every 32 writes;
	// RandReadIOPS 4 KiB reads at random offsets after the cached pages were dropped.
	RandWriteIOPS float64 `json:"rand_write_iops"`
	RandReadIOPS  float64 `json:"rand_read_iops"`
}

// ParseIORun reads the workload's result: the last line of out that is a JSON object.
func ParseIORun(out string) (IORun, error) {
	var r IORun
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if !strings.HasPrefix(l, "{") {
			continue
		}
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			return r, fmt.Errorf("I/O workload result %q: %w", l, err)
		}
		if r.SeqWriteMiBs <= 0 || r.CreatePerSec <= 0 {
			return r, fmt.Errorf("I/O workload result %q: no figures", l)
		}
		return r, nil
	}
	return r, errors.New("I/O workload printed no result: " + strings.TrimSpace(out))
}

// IO is the I/O measure: the workload in each variant (runtime and storage).
type IO struct {
	Variants []IOVariant `json:"variants"`
}

// IOVariant is one runtime and storage's I/O figures over the runs.
type IOVariant struct {
	// Name is the variant ("runc", "vessel-9p", "vessel-virtio-fs-auto", "vessel-block");
	// Storage describes where the workload's directory lives.
	Name    string  `json:"name"`
	Storage string  `json:"storage"`
	Runs    []IORun `json:"runs"`
	// Summaries of the runs, one per figure of IORun.
	Create    stats.Summary `json:"create_per_sec"`
	Find      stats.Summary `json:"find_per_sec"`
	Delete    stats.Summary `json:"delete_per_sec"`
	SeqWrite  stats.Summary `json:"seq_write_mib_s"`
	SeqRead   stats.Summary `json:"seq_read_mib_s"`
	RandWrite stats.Summary `json:"rand_write_iops"`
	RandRead  stats.Summary `json:"rand_read_iops"`
}

// Summarize fills v's summaries from its runs.
func (v *IOVariant) Summarize() {
	pick := func(f func(IORun) float64) stats.Summary { return summarizeRuns(v.Runs, f) }
	v.Create = pick(func(r IORun) float64 { return r.CreatePerSec })
	v.Find = pick(func(r IORun) float64 { return r.FindPerSec })
	v.Delete = pick(func(r IORun) float64 { return r.DeletePerSec })
	v.SeqWrite = pick(func(r IORun) float64 { return r.SeqWriteMiBs })
	v.SeqRead = pick(func(r IORun) float64 { return r.SeqReadMiBs })
	v.RandWrite = pick(func(r IORun) float64 { return r.RandWriteIOPS })
	v.RandRead = pick(func(r IORun) float64 { return r.RandReadIOPS })
}

// summarizeRuns summarizes one figure, read by f, over runs.
func summarizeRuns[R any](runs []R, f func(R) float64) stats.Summary {
	s := make([]float64, len(runs))
	for i, r := range runs {
		s[i] = f(r)
	}
	return stats.Of(s)
}

// summaryRow is one row of a summaryTable: its name and the figure it reads of a column.
type summaryRow[V any] struct {
	name   string
	figure func(V) stats.Summary
}

// summaryTable writes a Markdown table with one column per element of cols (headed by
// name) and one row per rows entry, each cell the figure's rateSummary.
func summaryTable[V any](b *strings.Builder, cols []V, name func(V) string, rows []summaryRow[V]) {
	b.WriteString("| Figure |")
	for _, v := range cols {
		fmt.Fprintf(b, " %s |", name(v))
	}
	b.WriteString("\n|---|")
	for range cols {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, r := range rows {
		fmt.Fprintf(b, "| %s |", r.name)
		for _, v := range cols {
			fmt.Fprintf(b, " %s |", rateSummary(r.figure(v)))
		}
		b.WriteString("\n")
	}
}

// rateSummary formats a rate: the median and, over several runs, the range.
func rateSummary(s stats.Summary) string {
	if s.N == 0 {
		return "–"
	}
	if s.N == 1 || s.Min == s.Max {
		return fmt.Sprintf("%.0f", s.Median)
	}
	return fmt.Sprintf("%.0f (%.0f–%.0f)", s.Median, s.Min, s.Max)
}

func writeIO(b *strings.Builder, r *Results) {
	io := r.IO
	if io == nil || len(io.Variants) == 0 {
		return
	}
	b.WriteString("## I/O\n\nThe I/O workload (`bench/cmd/vesselio`) in each variant's directory; higher is better.\n\n")
	var p IORun
	if len(io.Variants[0].Runs) > 0 {
		p = io.Variants[0].Runs[0]
		fmt.Fprintf(b, "%d small files, a %d MiB file, %.0f s per random test.\n\n", p.Files, p.SizeMiB, p.RandSeconds)
	}
	summaryTable(b, io.Variants, func(v IOVariant) string { return v.Name }, []summaryRow[IOVariant]{
		{"small-file create, files/s", func(v IOVariant) stats.Summary { return v.Create }},
		{"find (walk + stat), entries/s", func(v IOVariant) stats.Summary { return v.Find }},
		{"small-file delete, files/s", func(v IOVariant) stats.Summary { return v.Delete }},
		{"sequential write 1 MiB + fsync, MiB/s", func(v IOVariant) stats.Summary { return v.SeqWrite }},
		{"sequential read 1 MiB, MiB/s", func(v IOVariant) stats.Summary { return v.SeqRead }},
		{"random write 4 KiB (fsync / 32), IOPS", func(v IOVariant) stats.Summary { return v.RandWrite }},
		{"random read 4 KiB, IOPS", func(v IOVariant) stats.Summary { return v.RandRead }},
	})
	b.WriteString("\n")
	for _, v := range io.Variants {
		fs := ""
		if len(v.Runs) > 0 {
			fs = " (" + v.Runs[0].FSType + ")"
		}
		fmt.Fprintf(b, "- %s: %s%s\n", v.Name, v.Storage, fs)
	}
	b.WriteString("\n")
}
