package report

import (
	"fmt"
	"strings"

	"github.com/vessel-containers/vessel/bench/internal/stats"
)

// Names of the runtimes the runsc measure drives through their OCI CLIs.
const (
	Runsc   = "runsc"
	RuncCLI = "runc-cli"
)

// GVisor is gVisor (runsc) beside runc, both through their OCI CLIs (Debian's runsc has no
// containerd shim).
type GVisor struct {
	// Skipped says why the measure did not run (runsc missing); the rest is then empty.
	Skipped  string `json:"skipped,omitempty"`
	Platform string `json:"platform,omitempty"`
	Version  string `json:"version,omitempty"`
	// Runtimes are runsc and runc's CLI.
	Runtimes []OCIRuntime `json:"runtimes,omitempty"`
	// Memory holds runsc's idle sandboxes.
	Memory []OCIMemoryPoint `json:"memory,omitempty"`
}

// OCIRuntime is one CLI's figures: Cold is `run` of true until the CLI exited, Exec is
// `exec` of true into a running container.
type OCIRuntime struct {
	Runtime string        `json:"runtime"`
	Cold    stats.Summary `json:"cold"`
	Exec    stats.Summary `json:"exec"`
}

// OCIMemoryPoint is the PSS of Sandboxes idle sandboxes of one runtime.
type OCIMemoryPoint struct {
	Runtime    string        `json:"runtime"`
	Sandboxes  int           `json:"sandboxes"`
	PerSandbox stats.Summary `json:"per_sandbox_mib"`
	TotalMiB   float64       `json:"total_mib"`
}

// runscFigure returns the runsc figure for a row of the summary: "cold", "exec", or the
// PSS with n sandboxes ("pss"); "" when there is none.
func runscFigure(r *Results, what string, n int) string {
	g := r.Runsc
	if g == nil || g.Skipped != "" {
		return ""
	}
	for _, rt := range g.Runtimes {
		if rt.Runtime != Runsc {
			continue
		}
		switch what {
		case "cold":
			return secSummary(rt.Cold)
		case "exec":
			return secSummary(rt.Exec)
		}
	}
	if what == "pss" {
		for _, p := range g.Memory {
			if p.Sandboxes == n {
				return mibSummary(p.PerSandbox)
			}
		}
	}
	return ""
}

func writeRunsc(b *strings.Builder, r *Results) {
	g := r.Runsc
	if g == nil {
		return
	}
	b.WriteString("## gVisor (runsc) beside runc, through their OCI CLIs\n\n")
	if g.Skipped != "" {
		fmt.Fprintf(b, "Not run: %s.\n\n", g.Skipped)
		return
	}
	fmt.Fprintf(b, "%s, `--platform=%s --network=none`; runc's CLI measured the same way. Cold is `run` of `true` until the CLI exited; exec is `exec … true` into a running container.\n\n", g.Version, g.Platform)
	b.WriteString("| Figure |")
	sep := "|---|"
	for _, rt := range g.Runtimes {
		fmt.Fprintf(b, " %s |", rt.Runtime)
		sep += "---|"
	}
	b.WriteString("\n" + sep + "\n| Cold `run … true` |")
	for _, rt := range g.Runtimes {
		fmt.Fprintf(b, " %s |", secSummary(rt.Cold))
	}
	b.WriteString("\n| Exec `true` |")
	for _, rt := range g.Runtimes {
		fmt.Fprintf(b, " %s |", secSummary(rt.Exec))
	}
	b.WriteString("\n")
	for _, p := range g.Memory {
		fmt.Fprintf(b, "| PSS per idle %s sandbox, %d running (total %.0f MiB) | %s | |\n", p.Runtime, p.Sandboxes, p.TotalMiB, mibSummary(p.PerSandbox))
	}
	b.WriteString("\n")
}
