package report

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vessel-containers/vessel/bench/internal/stats"
)

func sample() *Results {
	return &Results{
		Started: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Runs: 3,
		Floor: &Floor{Boot: stats.Of([]float64{1.4, 1.5, 1.6})},
		Cold: &Cold{
			Vessel:    ColdRuntime{True: stats.Of([]float64{2.3, 2.4, 2.5})},
			Runc:      ColdRuntime{True: stats.Of([]float64{0.1, 0.12, 0.11})},
			Breakdown: []PhaseSummary{{Name: "kernel boot", Seconds: stats.Of([]float64{1.1, 1.2, 1.3})}},
		},
		Memory: &Memory{Points: []MemoryPoint{
			{Runtime: Vessel, Sandboxes: 1, PerSandbox: stats.Of([]float64{140})},
			{Runtime: Runc, Sandboxes: 1, PerSandbox: stats.Of([]float64{13})},
			{Runtime: "vessel-ksm", Sandboxes: 1, PerSandbox: stats.Of([]float64{110}), KSM: &KSM{
				MergeSeconds: 21, MergeScans: 3, MergePagesToScan: 2000, PagesToScan: 100, KsmdCores: 0.009, PagesShared: 7245, PagesSharing: 88016}},
		}},
		Warm: &Warm{
			Modes: []WarmMode{
				{Name: "cache", True: stats.Of([]float64{0.3, 0.35, 0.4})},
				{Name: "template", True: stats.Of([]float64{0.8}), ColdFallbacks: 2, FallbackWhy: "template: differs in kernel"},
			},
			Runc:      stats.Of([]float64{0.1, 0.12, 0.14}),
			Memory:    &MemoryPoint{Runtime: "vessel-template", Sandboxes: 10, PerSandbox: stats.Of([]float64{77, 78}), TotalMiB: 775},
			MemoryKSM: &MemoryPoint{Runtime: "vessel-template-ksm", Sandboxes: 10, PerSandbox: stats.Of([]float64{60}), TotalMiB: 600, KSM: &KSM{KsmdCores: 0.01, PagesToScan: 100}},
		},
		Stdio: &Stdio{SizeMiB: 16, Runtimes: []StdioRuntime{
			{Runtime: Vessel, Transfers: []StdioTransfer{{Kind: StdioPipe, MBps: stats.Of([]float64{7, 7.6, 8}), Total: stats.Of([]float64{2.5})}}, ExecIdle: stats.Of([]float64{0.2})},
			{Runtime: Runc, Transfers: []StdioTransfer{{Kind: StdioPipe, MBps: stats.Of([]float64{120})}}},
		}},
		Runsc: &GVisor{
			Platform: "ptrace", Version: "runsc version test",
			Runtimes: []OCIRuntime{{Runtime: Runsc, Cold: stats.Of([]float64{0.45, 0.5, 0.55}), Exec: stats.Of([]float64{0.03})}, {Runtime: RuncCLI, Cold: stats.Of([]float64{0.09})}},
			Memory:   []OCIMemoryPoint{{Runtime: Runsc, Sandboxes: 1, PerSandbox: stats.Of([]float64{28}), TotalMiB: 28}},
		},
		Errors: map[string]string{"density": "boom"},
	}
}

func TestMarkdown(t *testing.T) {
	md := Markdown(sample())
	for _, want := range []string{
		"| Bare-VM floor (QEMU + kernel boot + power-off) | 1.50 s (1.40 s–1.60 s) |",
		"| Cold start `ctr run --rm … true` | 2.40 s (2.30 s–2.50 s) | 110 ms (100 ms–120 ms) | 500 ms (450 ms–550 ms) | 21.82× | 1.60× |",
		"| kernel boot |", "| PSS per idle sandbox, 1 running | 140 MiB | 13 MiB | 28 MiB |", "- density: boom",
		"| Warm start `ctr run --rm … true`, cache | 350 ms (300 ms–400 ms) | 120 ms (100 ms–140 ms) | | 2.92× | 0.23× |",
		"| stdout (pipe), rate | 7.6 MB/s (7.0–8.0) | 120.0 MB/s |",
		"| Cold `run … true` | 500 ms (450 ms–550 ms) | 90 ms |",
		"| PSS per idle runsc sandbox, 1 running (total 28 MiB) | 28 MiB | |",
		"| template | 800 ms | 1 | 2 (template: differs in kernel) |",
		"10 idle sandboxes restored from one template: 78 MiB (77–78) per sandbox",
		"| vessel-ksm | 1 | 110 MiB |",
		"The same 10 with the host's KSM on: 60 MiB per sandbox",
		"vessel-ksm: the same 1 sandboxes after the host's KSM merged their pages (21.00 s for 3 full scans at 2000 pages per wake-up); 7245 pages shared, 88016 sharing (344 MiB saved host-wide); ksmd then used 0.009 cores at the host's 100 pages per wake-up.",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	if md := Markdown(&Results{}); !strings.Contains(md, "## Summary") {
		t.Errorf("empty results: %s", md)
	}
	skipped := Markdown(&Results{Runsc: &GVisor{Skipped: "runsc is not installed"}})
	if !strings.Contains(skipped, "Not run: runsc is not installed.") {
		t.Errorf("a skipped runsc measure is not reported as such:\n%s", skipped)
	}
}

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	for _, r := range []*Results{sample(), {}} {
		paths, err := Write(dir, r)
		if err != nil {
			t.Fatal(err)
		}
		if len(paths) != 3 {
			t.Fatalf("got %v, want json, md and png", paths)
		}
		data, err := os.ReadFile(filepath.Join(dir, "results.json"))
		if err != nil {
			t.Fatal(err)
		}
		var back Results
		if err := json.Unmarshal(data, &back); err != nil {
			t.Fatal(err)
		}
		png, err := os.ReadFile(filepath.Join(dir, "chart.png"))
		if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG")) {
			t.Errorf("chart.png is not a PNG (%v)", err)
		}
	}
}
