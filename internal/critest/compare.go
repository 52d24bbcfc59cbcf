package critest

import (
	"bufio"
	"encoding/xml"
	"fmt"
	"io"
	"sort"
	"strings"
)

// Verdict is one spec's result with one runtime handler.
type Verdict string

const (
	// Pass: the spec ran and passed.
	Pass Verdict = "pass"
	// Fail: the spec failed, timed out, panicked or was interrupted.
	Fail Verdict = "fail"
	// Skip: the spec was skipped (by -ginkgo.focus/-ginkgo.skip or by the spec itself).
	Skip Verdict = "skip"
	// Missing: the handler's report does not name the spec (its run ended early).
	Missing Verdict = "not run"
)

// Results are one handler's verdicts by spec name: the JUnit test case's name without
// ginkgo's "[It] " prefix and the "[k8s.io] " every critest spec starts with.
type Results map[string]Verdict

// Count counts the specs of r that passed, failed (or did not run) and were skipped.
func (r Results) Count() (pass, fail, skip int) {
	for _, v := range r {
		switch v {
		case Pass:
			pass++
		case Skip:
			skip++
		default:
			fail++
		}
	}
	return pass, fail, skip
}

type junitSuites struct {
	Suites []struct {
		Cases []struct {
			Name   string `xml:"name,attr"`
			Status string `xml:"status,attr"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

// ParseJUnit reads the JUnit report critest writes (-ginkgo.junit-report): every spec,
// including those its focus and skip filters left out, as a test case named
// "[It] [k8s.io] SPEC" with ginkgo's state in its status attribute. A suite node
// (BeforeSuite and the like) that did not pass is returned as a spec of its own name
// ("[BeforeSuite]"), so a broken setup is not mistaken for an empty run.
func ParseJUnit(r io.Reader) (Results, error) {
	var doc junitSuites
	if err := xml.NewDecoder(r).Decode(&doc); err != nil { //nolint:gosec // critest's own report, decoded into a fixed struct of strings
		return nil, fmt.Errorf("junit report: %w", err)
	}
	res := Results{}
	for _, s := range doc.Suites {
		for _, c := range s.Cases {
			name, isSpec := strings.CutPrefix(c.Name, "[It] ")
			name = strings.TrimPrefix(name, "[k8s.io] ")
			var v Verdict
			switch c.Status {
			case "passed":
				v = Pass
			case "skipped", "pending":
				v = Skip
			case "failed", "timedout", "panicked", "interrupted", "aborted":
				v = Fail
			default:
				return nil, fmt.Errorf("junit report: test case %q has status %q, want one of ginkgo's spec states", c.Name, c.Status)
			}
			if !isSpec && v == Pass {
				continue
			}
			if _, dup := res[name]; dup {
				return nil, fmt.Errorf("junit report: test case %q appears twice", c.Name)
			}
			res[name] = v
		}
	}
	if len(res) == 0 {
		return nil, fmt.Errorf("junit report: no test case")
	}
	return res, nil
}

// exceptionsFile is the critest exceptions list, relative to the repository's root.
const exceptionsFile = "conformance/critest-exceptions.txt"

// Exception is a spec that passes with runc and may fail with Vessel, with the reason.
type Exception struct {
	Spec   string
	Reason string
	// ByDesign: the spec cannot pass in a VM; otherwise it is an open gap.
	ByDesign bool
	// Containerd is the containerd version the exception is for ("1.6" or "2"); "" for
	// every version.
	Containerd string
}

// Kind is how the exception's reason starts in the list: "by design" or "open".
func (e Exception) Kind() string {
	if e.ByDesign {
		return "by design"
	}
	return "open"
}

// ParseExceptions reads the critest exceptions list (conformance/critest-exceptions.txt):
// one spec per line as "SPEC: by design: REASON" or "SPEC: open: REASON", optionally
// preceded by "[containerd 1.6] " or "[containerd 2] " when it holds for one containerd
// version only. Blank lines and lines starting with '#' are ignored. A line of another
// shape, an empty reason, an unknown version or a spec listed twice for the same version
// is an error naming the line.
func ParseExceptions(r io.Reader) ([]Exception, error) {
	var list []Exception
	seen := map[[2]string]int{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		var e Exception
		if rest, ok := strings.CutPrefix(line, "[containerd "); ok {
			v, after, ok := strings.Cut(rest, "] ")
			if !ok || (v != "1.6" && v != "2") {
				return nil, fmt.Errorf("line %d: want \"[containerd 1.6] \" or \"[containerd 2] \" before the spec, got %q", n, line)
			}
			e.Containerd, line = v, after
		}
		spec, reason, kind := cutReason(line)
		if spec == "" || reason == "" {
			return nil, fmt.Errorf("line %d: want \"SPEC: by design: REASON\" or \"SPEC: open: REASON\", got %q", n, line)
		}
		e.Spec, e.Reason, e.ByDesign = spec, reason, kind == "by design"
		key := [2]string{e.Containerd, e.Spec}
		if prev, dup := seen[key]; dup {
			return nil, fmt.Errorf("line %d: %q is listed again (first on line %d)", n, e.Spec, prev)
		}
		seen[key] = n
		list = append(list, e)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	// An entry for every version and one for a single version would leave it unclear
	// which reason holds.
	for _, e := range list {
		if e.Containerd == "" {
			continue
		}
		if n, dup := seen[[2]string{"", e.Spec}]; dup {
			return nil, fmt.Errorf("%q is listed for containerd %s and, on line %d, for every version", e.Spec, e.Containerd, n)
		}
	}
	return list, nil
}

// cutReason splits "SPEC: KIND: REASON" at the first ": by design: " or ": open: ".
func cutReason(line string) (spec, reason, kind string) {
	best := -1
	for _, k := range []string{"by design", "open"} {
		if i := strings.Index(line, ": "+k+": "); i >= 0 && (best < 0 || i < best) {
			best, kind = i, k
		}
	}
	if best < 0 {
		return "", "", ""
	}
	return strings.TrimSpace(line[:best]), strings.TrimSpace(line[best+len(": "+kind+": "):]), kind
}

// exceptionsFor picks the entries of list that hold for the containerd version.
func exceptionsFor(list []Exception, containerd string) map[string]Exception {
	m := map[string]Exception{}
	for _, e := range list {
		if e.Containerd == "" || e.Containerd == containerd {
			m[e.Spec] = e
		}
	}
	return m
}

// Status is how a spec's Vessel result compares with runc's.
type Status string

const (
	// Same: Vessel did as well as runc, and the spec is not listed.
	Same Status = "same"
	// Regression: runc passed and Vessel did not, and the list does not explain it.
	Regression Status = "regression"
	// Expected: runc passed and Vessel did not, as the list says.
	Expected Status = "expected"
	// Stale: the list names the spec, yet Vessel passed it: the entry must go.
	Stale Status = "stale"
	// Unjudged: the list names the spec, but runc did not pass it in this run (it failed,
	// or the run's filters skipped it), so the entry is neither confirmed nor refuted.
	Unjudged Status = "unjudged"
	// Unknown: the list names a spec the suite does not have.
	Unknown Status = "unknown"
)

// Row is one spec's results side by side.
type Row struct {
	Spec         string
	Runc, Vessel Verdict
	Status       Status
	// Exception is the list's entry for the spec, if any.
	Exception *Exception
}

// Comparison is a pair of runs, one row per spec either handler's report names plus one
// per listed spec neither names, sorted by spec.
type Comparison struct {
	Containerd string
	Rows       []Row
}

// Compare judges vessel's results against runc's with the exceptions that hold for the
// containerd version: a spec runc passed that Vessel did not pass (failed, skipped, or
// missing from its report) is a regression unless listed; a listed spec Vessel passed is
// stale.
func Compare(containerd string, runc, vessel Results, list []Exception) Comparison {
	exc := exceptionsFor(list, containerd)
	specs := map[string]bool{}
	for s := range runc {
		specs[s] = true
	}
	for s := range vessel {
		specs[s] = true
	}
	for s := range exc {
		specs[s] = true
	}
	c := Comparison{Containerd: containerd}
	for s := range specs {
		row := Row{Spec: s, Runc: verdict(runc, s), Vessel: verdict(vessel, s)}
		if e, ok := exc[s]; ok {
			row.Exception = &e
		}
		_, inRunc := runc[s]
		_, inVessel := vessel[s]
		worse := row.Runc == Pass && row.Vessel != Pass
		switch {
		case row.Exception != nil && !inRunc && !inVessel:
			row.Status = Unknown
		case worse && row.Exception != nil:
			row.Status = Expected
		case worse:
			row.Status = Regression
		case row.Exception != nil && row.Vessel == Pass:
			row.Status = Stale
		case row.Exception != nil:
			row.Status = Unjudged
		default:
			row.Status = Same
		}
		c.Rows = append(c.Rows, row)
	}
	sort.Slice(c.Rows, func(i, j int) bool { return c.Rows[i].Spec < c.Rows[j].Spec })
	return c
}

func verdict(r Results, spec string) Verdict {
	if v, ok := r[spec]; ok {
		return v
	}
	return Missing
}

// Problems lists what fails the run: regressions, stale and unknown entries, and a
// reference run in which runc passed nothing (a broken setup proves nothing).
func (c Comparison) Problems() []string {
	var p []string
	var runcPassed int
	for _, r := range c.Rows {
		if r.Runc == Pass {
			runcPassed++
		}
		switch r.Status {
		case Regression:
			p = append(p, fmt.Sprintf("%s: runc %s, Vessel %s, and conformance/critest-exceptions.txt does not list it", r.Spec, r.Runc, r.Vessel))
		case Stale:
			p = append(p, fmt.Sprintf("%s: listed as an exception (%s: %s) but Vessel passed it: remove the entry", r.Spec, r.Exception.Kind(), r.Exception.Reason))
		case Unknown:
			p = append(p, fmt.Sprintf("%s: listed as an exception but critest has no such spec", r.Spec))
		}
	}
	if runcPassed == 0 {
		p = append(p, "runc passed no spec: the reference run proves nothing")
	}
	return p
}

// Markdown writes the results: the counts per handler, then one table row per spec that
// did not pass with both (skipped by both is left out unless listed), with the
// exception's reason where there is one, then how many passed with both.
func (c Comparison) Markdown(w io.Writer, runc, vessel Results) error {
	var b strings.Builder
	b.WriteString("| | pass | fail | skip |\n|---|---|---|---|\n")
	for _, h := range []struct {
		name string
		r    Results
	}{{"runc", runc}, {"vessel", vessel}} {
		pass, fail, skip := h.r.Count()
		fmt.Fprintf(&b, "| %s | %d | %d | %d |\n", h.name, pass, fail, skip)
	}
	b.WriteString("\n| Spec | runc | Vessel | Status |\n|---|---|---|---|\n")
	var both int
	for _, r := range c.Rows {
		if r.Exception == nil && ((r.Runc == Skip && r.Vessel == Skip) || (r.Runc == Pass && r.Vessel == Pass)) {
			if r.Runc == Pass {
				both++
			}
			continue
		}
		status := string(r.Status)
		if r.Status == Same {
			status = ""
		}
		if r.Exception != nil {
			status += ": " + r.Exception.Kind() + ": " + r.Exception.Reason
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", cell(r.Spec), r.Runc, r.Vessel, cell(status))
	}
	fmt.Fprintf(&b, "\n%d other specs pass with both handlers.\n", both)
	_, err := io.WriteString(w, b.String())
	return err
}

// cell keeps a table cell on one line and its pipes out of the table's syntax.
func cell(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}
