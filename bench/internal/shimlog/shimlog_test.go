package shimlog

import (
	"strings"
	"testing"
	"time"
)

func TestParseLogfmt(t *testing.T) {
	got := parseLogfmt(`time="2026-11-25T13:22:58.097328087Z" level=debug msg="task api" id=c1 took=1.5ms args="[-a \"b c\"]" runtime=io.containerd.vessel.v2`)
	want := map[string]string{
		"time": "2026-11-25T13:22:58.097328087Z", "level": "debug", "msg": "task api", "id": "c1",
		"took": "1.5ms", "args": `[-a "b c"]`, "runtime": "io.containerd.vessel.v2",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %q, want %q", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %d fields, want %d: %v", len(got), len(want), got)
	}
}

func TestParseSkipsOtherLines(t *testing.T) {
	lines, err := Parse(strings.NewReader("not a log line\ntime=bogus msg=x\n" +
		`time="2026-11-25T13:22:58Z" level=info msg=hello` + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 1 || lines[0].Msg != "hello" {
		t.Errorf("got %+v, want the one parsable line", lines)
	}
}

// logAt writes a logrus text line at t0+at.
func logAt(t0 time.Time, at time.Duration, rest string) string {
	return `time="` + t0.Add(at).Format(time.RFC3339Nano) + `" level=debug ` + rest + "\n"
}

func TestBreakdown(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ms := time.Millisecond
	log := logAt(t0, 1500*ms, `msg="vm started" sandbox=c1 elapsed=50ms pid=7`) +
		logAt(t0, 2800*ms, `msg="agent ready" sandbox=c1 elapsed=1.35s`) +
		logAt(t0, 2810*ms, `msg="sandbox created" sandbox=c1 elapsed=1.36s`) +
		logAt(t0, 3400*ms, `msg="task api" method=Create id=c1 took=3.35s`) +
		logAt(t0, 3420*ms, `msg="task api" method=Start id=c1 took=10ms`) +
		logAt(t0, 3490*ms, `msg="task api" method=Wait id=c1 took=60ms`) +
		logAt(t0, 3495*ms, `msg="task api" method=Start id=c1 exec_id=e1 took=1ms`) +
		logAt(t0, 3500*ms, `msg="guest boot" sandbox=c1 kernel=1s agent_ready=1.1s`) +
		logAt(t0, 3550*ms, `msg="task api" method=Delete id=c1 took=50ms`) +
		logAt(t0, 2000*ms, `msg="agent ready" sandbox=other elapsed=1s`)
	lines, err := Parse(strings.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	got, err := Breakdown(lines, "c1", t0, t0.Add(3600*ms))
	if err != nil {
		t.Fatal(err)
	}
	want := []Phase{
		{PhaseShimStart, 50 * ms},
		{PhaseHostPrep, 1400 * ms},
		{PhaseQEMUStart, 50 * ms},
		{PhaseKernelBoot, 1000 * ms},
		{PhaseAgentInit, 100 * ms},
		{PhaseAgentHandshake, 200 * ms},
		{PhaseSandboxSetup, 10 * ms},
		{PhaseContainer, 590 * ms},
		{PhaseProcessStart, 20 * ms},
		{PhaseRunExit, 70 * ms},
		{PhaseTeardown, 110 * ms},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d phases %v, want %d", len(got), got, len(want))
	}
	var sum time.Duration
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("phase %d: got %v, want %v", i, got[i], want[i])
		}
		sum += got[i].Duration
	}
	if sum != 3600*ms {
		t.Errorf("phases add up to %v, want the whole run 3.6s", sum)
	}
}

func TestBreakdownWithoutGuestTimes(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ms := time.Millisecond
	log := logAt(t0, 100*ms, `msg="vm started" sandbox=c1 elapsed=50ms`) +
		logAt(t0, 1100*ms, `msg="agent ready" sandbox=c1 elapsed=1s`) +
		logAt(t0, 1110*ms, `msg="sandbox created" sandbox=c1 elapsed=1s`) +
		logAt(t0, 1500*ms, `msg="task api" method=Create id=c1 took=1.49s`) +
		logAt(t0, 1510*ms, `msg="task api" method=Start id=c1 took=5ms`) +
		logAt(t0, 1600*ms, `msg="task api" method=Wait id=c1 took=80ms`)
	lines, _ := Parse(strings.NewReader(log))
	got, err := Breakdown(lines, "c1", t0, t0.Add(1700*ms))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range got {
		if p.Name == PhaseKernelBoot {
			t.Errorf("kernel boot reported without the guest's times")
		}
		if p.Name == PhaseBootAndAgent && p.Duration != time.Second {
			t.Errorf("boot and agent: got %v, want 1s", p.Duration)
		}
	}
}

func TestBreakdownNamesMissingLines(t *testing.T) {
	_, err := Breakdown(nil, "c1", time.Now(), time.Now())
	if err == nil || !strings.Contains(err.Error(), "vm started") {
		t.Errorf("got %v, want an error naming the missing lines", err)
	}
}
