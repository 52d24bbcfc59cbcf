package report

import (
	"fmt"
	"strings"

	"github.com/vessel-containers/vessel/bench/internal/stats"
)

// Kinds of stdio transfer.
const (
	StdioPipe   = "stdout (pipe)"
	StdioStderr = "stderr (pipe)"
	StdioTTY    = "terminal"
)

// Stdio is output throughput from a container to the host and exec under output load.
type Stdio struct {
	// SizeMiB is what each transfer moves.
	SizeMiB  int            `json:"size_mib"`
	Runtimes []StdioRuntime `json:"runtimes"`
}

// StdioRuntime is one runtime's stdio figures.
type StdioRuntime struct {
	Runtime   string          `json:"runtime"`
	Transfers []StdioTransfer `json:"transfers"`
	// ExecIdle is `ctr task exec … true` into the idle container, ExecLoaded the same
	// while another process of the container floods its stdout.
	ExecIdle   stats.Summary `json:"exec_idle"`
	ExecLoaded stats.Summary `json:"exec_loaded"`
}

// StdioTransfer is one kind of transfer: MBps is MB/s (10^6 bytes) from the first byte
// to the last, Total the seconds from ctr's start until the last byte arrived.
type StdioTransfer struct {
	Kind  string        `json:"kind"`
	MBps  stats.Summary `json:"mb_per_s"`
	Total stats.Summary `json:"total"`
}

func mbpsSummary(s stats.Summary) string {
	if s.N == 0 {
		return "–"
	}
	if s.N == 1 {
		return fmt.Sprintf("%.1f MB/s", s.Median)
	}
	return fmt.Sprintf("%.1f MB/s (%.1f–%.1f)", s.Median, s.Min, s.Max)
}

func writeStdio(b *strings.Builder, r *Results) {
	s := r.Stdio
	if s == nil || len(s.Runtimes) == 0 {
		return
	}
	fmt.Fprintf(b, "## stdio: output from a container to the host (`ctr task exec … dd`, %d MiB)\n\n", s.SizeMiB)
	b.WriteString("Rate from the first byte to the last; total from ctr's start until the last byte arrived.\n\n| Figure |")
	sep := "|---|"
	for _, rt := range s.Runtimes {
		fmt.Fprintf(b, " %s |", rt.Runtime)
		sep += "---|"
	}
	b.WriteString("\n" + sep + "\n")
	for i, t := range s.Runtimes[0].Transfers {
		fmt.Fprintf(b, "| %s, rate |", t.Kind)
		for _, rt := range s.Runtimes {
			if i < len(rt.Transfers) {
				fmt.Fprintf(b, " %s |", mbpsSummary(rt.Transfers[i].MBps))
			} else {
				b.WriteString(" – |")
			}
		}
		fmt.Fprintf(b, "\n| %s, total |", t.Kind)
		for _, rt := range s.Runtimes {
			if i < len(rt.Transfers) {
				fmt.Fprintf(b, " %s |", secSummary(rt.Transfers[i].Total))
			} else {
				b.WriteString(" – |")
			}
		}
		b.WriteString("\n")
	}
	b.WriteString("| Exec `true`, container idle |")
	for _, rt := range s.Runtimes {
		fmt.Fprintf(b, " %s |", secSummary(rt.ExecIdle))
	}
	b.WriteString("\n| Exec `true`, another process flooding stdout |")
	for _, rt := range s.Runtimes {
		fmt.Fprintf(b, " %s |", secSummary(rt.ExecLoaded))
	}
	b.WriteString("\n\n")
}
