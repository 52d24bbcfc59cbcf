package report

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/vessel-containers/vessel/bench/internal/stats"
)

// NetRun is one run of the network workload's client (bench/cmd/vesselnet) against its
// server in a container: what it printed as its last line of output, a JSON object.
type NetRun struct {
	// Seconds is the duration of each test; HTTPConns the HTTP test's connections.
	Seconds   float64 `json:"seconds"`
	HTTPConns int     `json:"http_conns"`
	// ToContainerMbits is TCP throughput host→container, counted by the receiver;
	// FromContainerMbits container→host.
	ToContainerMbits   float64 `json:"to_container_mbit_s"`
	FromContainerMbits float64 `json:"from_container_mbit_s"`
	// RTTMedianUs and RTTP99Us are the round trips of 64-byte messages over one TCP
	// connection (TCP_NODELAY), one message at a time; PingPongs how many there were.
	RTTMedianUs float64 `json:"rtt_median_us"`
	RTTP99Us    float64 `json:"rtt_p99_us"`
	PingPongs   int     `json:"ping_pongs"`
	// HTTPPerSec is GET requests per second over HTTPConns keep-alive connections.
	HTTPPerSec float64 `json:"http_per_sec"`
}

// ParseNetRun reads the client's result: the last line of out that is a JSON object.
func ParseNetRun(out string) (NetRun, error) {
	var r NetRun
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if !strings.HasPrefix(l, "{") {
			continue
		}
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			return r, fmt.Errorf("network workload result %q: %w", l, err)
		}
		if r.ToContainerMbits <= 0 || r.FromContainerMbits <= 0 || r.RTTMedianUs <= 0 || r.HTTPPerSec <= 0 {
			return r, fmt.Errorf("network workload result %q: a figure is missing", l)
		}
		return r, nil
	}
	return r, errors.New("network workload printed no result: " + strings.TrimSpace(out))
}

// Net is the network measure: the workload against each runtime's container, which sits
// in a network namespace of the benchmark's own joined to the host by a veth pair.
type Net struct {
	// Skipped says why the measure did not run; the rest is then empty.
	Skipped string `json:"skipped,omitempty"`
	// Setup describes the network between the host and the container.
	Setup    string       `json:"setup,omitempty"`
	Runtimes []NetRuntime `json:"runtimes,omitempty"`
}

// NetRuntime is one runtime's network figures over the runs.
type NetRuntime struct {
	Name string   `json:"name"`
	Runs []NetRun `json:"runs"`
	// Summaries of the runs, one per figure of NetRun.
	ToContainer   stats.Summary `json:"to_container_mbit_s"`
	FromContainer stats.Summary `json:"from_container_mbit_s"`
	RTTMedian     stats.Summary `json:"rtt_median_us"`
	RTTP99        stats.Summary `json:"rtt_p99_us"`
	HTTP          stats.Summary `json:"http_per_sec"`
}

// Summarize fills v's summaries from its runs.
func (v *NetRuntime) Summarize() {
	pick := func(f func(NetRun) float64) stats.Summary { return summarizeRuns(v.Runs, f) }
	v.ToContainer = pick(func(r NetRun) float64 { return r.ToContainerMbits })
	v.FromContainer = pick(func(r NetRun) float64 { return r.FromContainerMbits })
	v.RTTMedian = pick(func(r NetRun) float64 { return r.RTTMedianUs })
	v.RTTP99 = pick(func(r NetRun) float64 { return r.RTTP99Us })
	v.HTTP = pick(func(r NetRun) float64 { return r.HTTPPerSec })
}

func writeNet(b *strings.Builder, r *Results) {
	n := r.Net
	if n == nil {
		return
	}
	b.WriteString("## Network\n\n")
	if n.Skipped != "" {
		fmt.Fprintf(b, "Not run: %s.\n\n", n.Skipped)
		return
	}
	if len(n.Runtimes) == 0 {
		return
	}
	b.WriteString("The network workload (`bench/cmd/vesselnet`): its server in the container, its client on the host")
	if n.Setup != "" {
		b.WriteString("; " + n.Setup)
	}
	b.WriteString(".")
	if len(n.Runtimes[0].Runs) > 0 {
		p := n.Runtimes[0].Runs[0]
		fmt.Fprintf(b, " %.0f s per test, HTTP over %d keep-alive connections.", p.Seconds, p.HTTPConns)
	}
	b.WriteString("\n\n")
	summaryTable(b, n.Runtimes, func(v NetRuntime) string { return v.Name }, []summaryRow[NetRuntime]{
		{"TCP host→container, Mbit/s (higher is better)", func(v NetRuntime) stats.Summary { return v.ToContainer }},
		{"TCP container→host, Mbit/s (higher is better)", func(v NetRuntime) stats.Summary { return v.FromContainer }},
		{"TCP round trip 64 B, median µs (lower is better)", func(v NetRuntime) stats.Summary { return v.RTTMedian }},
		{"TCP round trip 64 B, p99 µs (lower is better)", func(v NetRuntime) stats.Summary { return v.RTTP99 }},
		{"HTTP GET, requests/s (higher is better)", func(v NetRuntime) stats.Summary { return v.HTTP }},
	})
	b.WriteString("\n")
}
