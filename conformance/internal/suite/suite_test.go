package suite

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseTAP(t *testing.T) {
	in := `TAP version 13
ok 1 - has a root
not ok 2 - rlimit RLIMIT_NOFILE is 1024
  ---
  { "expected": 1024 }
  ...
ok 3 # SKIP linux.uidMappings not set
not ok 4 - flaky # TODO known
ok 5 hostname is set
not ok 6
# a diagnostic line
1..6
`
	got, err := ParseTAP(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := TAP{Plan: 6, Passed: 2, Failed: 2, Skipped: 2, Failures: []string{"rlimit RLIMIT_NOFILE is 1024", ""}}
	if got.Plan != want.Plan || got.Passed != want.Passed || got.Failed != want.Failed || got.Skipped != want.Skipped ||
		!slices.Equal(got.Failures, want.Failures) {
		t.Fatalf("ParseTAP = %+v, want %+v", got, want)
	}
}

func TestParseTAPSkipAll(t *testing.T) {
	got, err := ParseTAP(strings.NewReader("1..0 # SKIP no cgroup v2\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got.Plan != 0 || got.SkipAll != "no cgroup v2" || got.Executed() != 0 {
		t.Fatalf("ParseTAP = %+v", got)
	}
	if v := (Run{TAP: got}).Verdict(); v != Skip {
		t.Fatalf("verdict %s, want skip", v)
	}
}

func TestVerdict(t *testing.T) {
	ok := TAP{Plan: 2, Passed: 2}
	for _, tc := range []struct {
		name string
		run  Run
		want Verdict
	}{
		{"all passed", Run{TAP: ok}, Pass},
		{"a test failed", Run{TAP: TAP{Plan: 2, Passed: 1, Failed: 1}}, Fail},
		{"non-zero exit", Run{TAP: ok, ExitCode: 1}, Fail},
		{"timed out", Run{TAP: ok, ExitCode: -1, Err: "timed out"}, Fail},
		{"no plan", Run{TAP: TAP{Plan: -1, Passed: 2}}, Fail},
		{"fewer tests than planned", Run{TAP: TAP{Plan: 3, Passed: 2}}, Fail},
		{"all skipped", Run{TAP: TAP{Plan: 2, Skipped: 2}}, Skip},
	} {
		if got := tc.run.Verdict(); got != tc.want {
			t.Errorf("%s: verdict %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestParseKnown(t *testing.T) {
	k, err := ParseKnown(strings.NewReader("# comment\n\nlinux_ns_path: host namespaces mean nothing in a VM\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(k) != 1 || k["linux_ns_path"] != "host namespaces mean nothing in a VM" {
		t.Fatalf("ParseKnown = %v", k)
	}
	for _, bad := range []string{"linux_ns_path\n", "linux_ns_path:\n", "a: x\na: y\n"} {
		if _, err := ParseKnown(strings.NewReader(bad)); err == nil {
			t.Errorf("ParseKnown(%q) succeeded, want an error", bad)
		}
	}
}

func TestCompare(t *testing.T) {
	pass := Run{TAP: TAP{Plan: 1, Passed: 1}}
	fail := Run{TAP: TAP{Plan: 1, Failed: 1, Failures: []string{"x"}}}
	skip := Run{TAP: TAP{Plan: 1, Skipped: 1}}
	leak := Run{TAP: TAP{Plan: 1, Passed: 1}, Leaked: []string{"c1"}}
	known := Known{"listed": "by design"}
	for _, tc := range []struct {
		prog         string
		runc, vessel Run
		want         Status
	}{
		{"p", pass, pass, Same},
		{"p", fail, fail, Same},
		{"p", Run{TAP: TAP{Plan: 3, Passed: 2, Failed: 1}}, Run{TAP: TAP{Plan: 3, Passed: 1, Failed: 2}}, Regression},
		{"p", fail, pass, Same},
		{"p", pass, fail, Regression},
		{"p", pass, skip, Regression},
		{"p", pass, leak, Regression},
		{"listed", pass, fail, Expected},
		{"listed", pass, pass, Stale},
		{"listed", fail, fail, Stale},
	} {
		if got := Compare(tc.prog, tc.runc, tc.vessel, known).Status; got != tc.want {
			t.Errorf("Compare(%s, runc %s, vessel %s) = %s, want %s", tc.prog, tc.runc.Summary(), tc.vessel.Summary(), got, tc.want)
		}
	}
}

func TestResultProblems(t *testing.T) {
	pass := Run{TAP: TAP{Plan: 1, Passed: 1}}
	fail := Run{TAP: TAP{Plan: 1, Failed: 1, Failures: []string{"pid file written"}}}
	r := Result{Suite: "s", Rows: []Row{
		Compare("good", pass, pass, nil),
		Compare("bad", pass, fail, nil),
	}, Unlisted: []string{"gone"}}
	p := r.Problems()
	if len(p) != 2 || !strings.HasPrefix(p[0], "bad:") || !strings.HasPrefix(p[1], "gone:") {
		t.Fatalf("Problems = %q", p)
	}
	var md bytes.Buffer
	if err := r.Markdown(&md); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| bad | pass 1/1 | fail 0/1 | regression |", "- not ok: pid file written", "runc 2/2, Vessel 1/2"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("Markdown lacks %q:\n%s", want, md.String())
		}
	}

	// A run where one runtime executed nothing proves nothing.
	skipped := Run{TAP: TAP{Plan: 1, Skipped: 1}}
	empty := Result{Rows: []Row{Compare("p", skipped, skipped, nil)}}
	if p := empty.Problems(); len(p) != 2 {
		t.Fatalf("Problems of a run that executed nothing = %q, want two", p)
	}
	if p := (Result{}).Problems(); len(p) != 1 {
		t.Fatalf("Problems of an empty run = %q", p)
	}
}

func TestParseTAPTests(t *testing.T) {
	got, err := ParseTAP(strings.NewReader("1..3\nok 1 runc run\nnot ok 2 runc exec --user\nok 3 runc ps [v2] # skip test requires cgroups_v2\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Test{{"runc run", Pass}, {"runc exec --user", Fail}, {"runc ps [v2]", Skip}}
	if !slices.Equal(got.Tests, want) {
		t.Fatalf("Tests = %v, want %v", got.Tests, want)
	}
}

func TestParseKnownBats(t *testing.T) {
	k, err := ParseKnown(strings.NewReader("bats:kill.bats:kill detached busybox: open: kill --all of a stopped container fails\nmounts: by design: x\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := k[BatsKey("kill", "kill detached busybox")]; got != "open: kill --all of a stopped container fails" {
		t.Fatalf("bats entry reason = %q (list %v)", got, k)
	}
	if k["mounts"] != "by design: x" {
		t.Fatalf("runtime-tools entry lost: %v", k)
	}
}

func TestCompareTests(t *testing.T) {
	tap := func(tests ...Test) Run {
		r := Run{TAP: TAP{Plan: len(tests), Tests: tests}}
		for _, x := range tests {
			switch x.Outcome {
			case Pass:
				r.TAP.Passed++
			case Skip:
				r.TAP.Skipped++
			default:
				r.TAP.Failed++
			}
		}
		return r
	}
	runc := tap(Test{"a", Pass}, Test{"b", Pass}, Test{"c", Fail}, Test{"d", Skip})
	for _, tc := range []struct {
		name   string
		vessel Run
		known  Known
		want   Status
		tests  int
	}{
		{"same", tap(Test{"a", Pass}, Test{"b", Pass}, Test{"c", Fail}, Test{"d", Skip}), nil, Same, 0},
		{"better", tap(Test{"a", Pass}, Test{"b", Pass}, Test{"c", Pass}, Test{"d", Pass}), nil, Same, 0},
		{"a test fails", tap(Test{"a", Pass}, Test{"b", Fail}), nil, Regression, 1},
		{"a test is missing (timeout)", Run{TAP: TAP{Plan: 4, Passed: 1, Tests: []Test{{"a", Pass}}}, Err: "timed out"}, nil, Regression, 1},
		{"a test skips", tap(Test{"a", Pass}, Test{"b", Skip}), nil, Regression, 1},
		{"known", tap(Test{"a", Pass}, Test{"b", Fail}), Known{BatsKey("f", "b"): "why"}, Expected, 1},
		{"stale", tap(Test{"a", Pass}, Test{"b", Pass}), Known{BatsKey("f", "b"): "why"}, Stale, 1},
		{"listed test neither passes", tap(Test{"a", Pass}, Test{"b", Pass}), Known{BatsKey("f", "c"): "why"}, Same, 0},
		{"listed test runc fails and Vessel passes", tap(Test{"a", Pass}, Test{"b", Pass}, Test{"c", Pass}), Known{BatsKey("f", "c"): "why"}, Stale, 1},
		{"listed test that does not exist", tap(Test{"a", Pass}, Test{"b", Pass}), Known{BatsKey("f", "zz"): "why"}, Stale, 1},
		{"another file's entry", tap(Test{"a", Pass}, Test{"b", Pass}), Known{BatsKey("g", "b"): "why"}, Same, 0},
		{"leak", Run{TAP: tap(Test{"a", Pass}, Test{"b", Pass}).TAP, Leaked: []string{"container x"}}, nil, Regression, 0},
		{"known leak", Run{TAP: tap(Test{"a", Pass}, Test{"b", Pass}).TAP, Leaked: []string{"container x"}}, Known{"bats:f.bats": "why"}, Expected, 0},
	} {
		row := CompareTests("f", runc, tc.vessel, tc.known)
		if row.Status != tc.want || len(row.Tests) != tc.tests {
			t.Errorf("%s: status %s with %d test rows %+v, want %s with %d", tc.name, row.Status, len(row.Tests), row.Tests, tc.want, tc.tests)
		}
		r := Result{Rows: []Row{row}}
		if p := r.Problems(); (tc.want == Regression || tc.want == Stale) != (len(p) > 0) {
			t.Errorf("%s: Problems = %q", tc.name, p)
		}
	}
}

func TestTapWatch(t *testing.T) {
	w := &tapWatch{done: make(chan struct{})}
	done := func() bool {
		select {
		case <-w.done:
			return true
		default:
			return false
		}
	}
	for _, chunk := range []string{"1..2\nok 1 a\n# diag", "nostic\nnot ok 2 b", " # skip x"} {
		if _, err := w.Write([]byte(chunk)); err != nil {
			t.Fatal(err)
		}
		if done() {
			t.Fatalf("done after %q, before the last test line ended", chunk)
		}
	}
	if _, err := w.Write([]byte("\n")); err != nil {
		t.Fatal(err)
	}
	if !done() {
		t.Fatal("not done after every planned test reported")
	}
	if _, err := w.Write([]byte("ok 3 extra\n")); err != nil { // done closes once
		t.Fatal(err)
	}
	if got := string(w.Bytes()); !strings.HasPrefix(got, "1..2\nok 1 a\n") || !strings.HasSuffix(got, "ok 3 extra\n") {
		t.Fatalf("Bytes = %q", got)
	}
}

func TestParseTest2JSON(t *testing.T) {
	in := `{"Action":"run","Test":"TestA"}
{"Action":"output","Test":"TestA","Output":"=== RUN   TestA\n"}
{"Action":"pass","Test":"TestA/sub","Elapsed":0}
{"Action":"fail","Test":"TestA","Elapsed":1}
{"Action":"skip","Test":"TestB","Elapsed":0}
not json
{"Action":"pass","Test":"TestC","Elapsed":0}
{"Action":"output","Output":"containerd exited\n"}
{"Action":"fail","Elapsed":3}
`
	got := map[string]Verdict{}
	last := parseTest2JSON(strings.NewReader(in), got)
	if len(got) != 3 || got["TestA"] != Fail || got["TestB"] != Skip || got["TestC"] != Pass {
		t.Errorf("outcomes = %v, want TestA fail, TestB skip, TestC pass", got)
	}
	if last != "containerd exited" {
		t.Errorf("last output = %q, want the package's last line", last)
	}
}

func TestContainerdKnown(t *testing.T) {
	k := ContainerdKnown(Known{ContainerdKey("TestA"): "by design: x", "bats:a.bats:TestA": "other suite", "TestB": "runtime-tools"})
	if len(k) != 1 || k["TestA"] != "by design: x" {
		t.Errorf("ContainerdKnown = %v, want only TestA", k)
	}
}

// TestContainerdRun runs a stand-in for the client test binary (a script printing go
// test -v's lines, which test2json converts) and checks each outcome, a hang cut at the
// limit, a binary that reports nothing, and a process left naming the daemon's directory.
func TestContainerdRun(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("needs the go tool (test2json)")
	}
	c := Containerd{Dir: t.TempDir()}
	if err := os.MkdirAll(c.clientDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	script := `#!/bin/sh
# -test.v=test2json -test.root -test.run ^NAME$ -no-criu
name=${4#^}; name=${name%$}
[ "$TEST_RUNTIME" = rt ] || { echo "TEST_RUNTIME=$TEST_RUNTIME"; exit 1; }
case $name in
TestHang) sleep 100 ;;
TestNothing) echo "seed image pull failed"; exit 1 ;;
TestLeak) mkfifo "` + c.daemonDir() + `/fifo"; cat "` + c.daemonDir() + `/fifo" >/dev/null 2>&1 </dev/null & ;;
esac
echo "=== RUN   $name"
case $name in
TestFail) echo "--- FAIL: $name (0.00s)"; echo FAIL; exit 1 ;;
TestSkip) echo "--- SKIP: $name (0.00s)" ;;
*) echo "--- PASS: $name (0.00s)" ;;
esac
echo PASS
`
	if err := os.WriteFile(c.Binary(), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		test    string
		verdict Verdict
		err     string
		leaked  bool
	}{
		{"TestPass", Pass, "", false},
		{"TestFail", Fail, "", false},
		{"TestSkip", Skip, "", false},
		{"TestHang", Fail, "timed out after 2s", false},
		{"TestNothing", Fail, "no result (exit status 1): seed image pull failed", false},
		{"TestLeak", Pass, "", true},
	} {
		r := c.Run(context.Background(), "x", "rt", tc.test, os.Environ(), 2*time.Second)
		if r.Verdict() != tc.verdict || r.Err != tc.err || (len(r.Leaked) > 0) != tc.leaked {
			t.Errorf("%s: verdict %s, error %q, leaked %q; want %s, %q, leaked %v", tc.test, r.Verdict(), r.Err, r.Leaked, tc.verdict, tc.err, tc.leaked)
		}
		if _, err := os.Stat(filepath.Join(c.Dir, "logs", "x-"+tc.test+".json")); err != nil {
			t.Errorf("%s: no log: %v", tc.test, err)
		}
	}
	if _, err := os.Stat(c.daemonDir()); !os.IsNotExist(err) {
		t.Errorf("the daemon's directory is left: %v", err)
	}
}
