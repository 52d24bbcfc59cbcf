package report

import (
	"strings"
	"testing"
)

func TestParseNetRun(t *testing.T) {
	out := "a log line\n" +
		`{"seconds":2,"http_conns":4,"to_container_mbit_s":846.5,"from_container_mbit_s":966,"rtt_median_us":478,"rtt_p99_us":1392,"ping_pongs":4000,"http_per_sec":1141}` + "\n"
	r, err := ParseNetRun(out)
	if err != nil {
		t.Fatal(err)
	}
	want := NetRun{Seconds: 2, HTTPConns: 4, ToContainerMbits: 846.5, FromContainerMbits: 966, RTTMedianUs: 478, RTTP99Us: 1392, PingPongs: 4000, HTTPPerSec: 1141}
	if r != want {
		t.Errorf("parsed %+v, want %+v", r, want)
	}
	for _, bad := range []string{
		"",
		"vesselnet: host→container: connection refused\n",
		`{"seconds":2,` + "\n",
		`{"seconds":2,"to_container_mbit_s":846,"from_container_mbit_s":966,"rtt_median_us":478}` + "\n",
	} {
		if _, err := ParseNetRun(bad); err == nil {
			t.Errorf("ParseNetRun(%q) = nil error", bad)
		}
	}
}

func TestNetMarkdown(t *testing.T) {
	rts := []NetRuntime{
		{Name: Vessel, Runs: []NetRun{
			{Seconds: 5, HTTPConns: 4, ToContainerMbits: 800, FromContainerMbits: 900, RTTMedianUs: 480, RTTP99Us: 1400, HTTPPerSec: 1100},
			{ToContainerMbits: 850, FromContainerMbits: 950, RTTMedianUs: 470, RTTP99Us: 1300, HTTPPerSec: 1200},
			{ToContainerMbits: 820, FromContainerMbits: 920, RTTMedianUs: 500, RTTP99Us: 1500, HTTPPerSec: 1150},
		}},
		{Name: Runc, Runs: []NetRun{{Seconds: 5, HTTPConns: 4, ToContainerMbits: 11000, FromContainerMbits: 18000, RTTMedianUs: 23, RTTP99Us: 80, HTTPPerSec: 28000}}},
	}
	for i := range rts {
		rts[i].Summarize()
	}
	md := Markdown(&Results{Net: &Net{Setup: "a veth pair", Runtimes: rts}})
	for _, want := range []string{
		"## Network",
		"; a veth pair. 5 s per test, HTTP over 4 keep-alive connections.",
		"| Figure | vessel | runc |",
		"| TCP host→container, Mbit/s (higher is better) | 820 (800–850) | 11000 |",
		"| TCP container→host, Mbit/s (higher is better) | 920 (900–950) | 18000 |",
		"| TCP round trip 64 B, median µs (lower is better) | 480 (470–500) | 23 |",
		"| TCP round trip 64 B, p99 µs (lower is better) | 1400 (1300–1500) | 80 |",
		"| HTTP GET, requests/s (higher is better) | 1150 (1100–1200) | 28000 |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	skipped := Markdown(&Results{Net: &Net{Skipped: "the net measure needs ip (apt-get install iproute2)"}})
	if !strings.Contains(skipped, "## Network\n\nNot run: the net measure needs ip (apt-get install iproute2).") || strings.Contains(skipped, "TCP host→container") {
		t.Errorf("a skipped net measure is not reported as such:\n%s", skipped)
	}
	if md := Markdown(&Results{}); strings.Contains(md, "## Network") {
		t.Errorf("a run without the net measure shows a network section:\n%s", md)
	}
}
