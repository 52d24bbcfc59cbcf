// Package suite runs conformance programs against two OCI runtimes (runc as the reference
// and Vessel) and compares what each passed: it reads the programs' TAP output, judges
// every program per runtime, checks the differences against a list of known, explained
// failures, and writes the table.
package suite

import (
	"bufio"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// TAP is what one program's TAP (Test Anything Protocol) output said.
type TAP struct {
	// Plan is the number of tests the plan line ("1..N") announced; -1 without one.
	Plan int
	// Passed, Failed and Skipped count the test lines by outcome; a "# SKIP" line counts as
	// skipped whatever its ok/not ok, a "# TODO" line that failed as skipped too.
	Passed, Failed, Skipped int
	// Failures are the descriptions of the failed tests, in order.
	Failures []string
	// SkipAll is the reason of a "1..0 # SKIP reason" plan.
	SkipAll string
	// Tests are the test lines in order: description and outcome.
	Tests []Test
}

// Test is one test line's description and outcome (pass, skip or fail).
type Test struct {
	Name    string
	Outcome Verdict
}

// Executed is the number of tests that ran (passed or failed, not skipped).
func (t TAP) Executed() int { return t.Passed + t.Failed }

var (
	planLine = regexp.MustCompile(`^1\.\.(\d+)\s*(?:#\s*(?i:skip)\S*\s*(.*))?$`)
	testLine = regexp.MustCompile(`^(not ok|ok)\b\s*(\d+)?\s*-?\s*(.*)$`)
)

// ParseTAP reads TAP version 12/13 from r: plan and test lines at the start of a line;
// YAML blocks, diagnostics and anything indented are ignored.
func ParseTAP(r io.Reader) (TAP, error) {
	t := TAP{Plan: -1}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if m := planLine.FindStringSubmatch(line); m != nil {
			n, err := strconv.Atoi(m[1])
			if err != nil {
				continue
			}
			t.Plan = n
			if n == 0 {
				t.SkipAll = strings.TrimSpace(m[2])
			}
			continue
		}
		m := testLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		desc, directive := splitDirective(m[3])
		outcome := Fail
		switch {
		case strings.HasPrefix(directive, "skip"):
			t.Skipped++
			outcome = Skip
		case strings.HasPrefix(directive, "todo") && m[1] == "not ok":
			t.Skipped++
			outcome = Skip
		case m[1] == "ok":
			t.Passed++
			outcome = Pass
		default:
			t.Failed++
			t.Failures = append(t.Failures, desc)
		}
		t.Tests = append(t.Tests, Test{Name: desc, Outcome: outcome})
	}
	return t, sc.Err()
}

// splitDirective splits a test description from its "# SKIP"/"# TODO" directive; the
// directive comes back lower case, "" when there is none.
func splitDirective(s string) (desc, directive string) {
	i := strings.LastIndex(s, "#")
	if i < 0 {
		return strings.TrimSpace(s), ""
	}
	d := strings.ToLower(strings.TrimSpace(s[i+1:]))
	if !strings.HasPrefix(d, "skip") && !strings.HasPrefix(d, "todo") {
		return strings.TrimSpace(s), ""
	}
	return strings.TrimSpace(s[:i]), d
}
