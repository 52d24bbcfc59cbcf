package suite

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// Verdict is a program's result with one runtime.
type Verdict string

const (
	// Pass: the program exited 0, ran every test its plan announced, and none failed.
	Pass Verdict = "pass"
	// Skip: the program exited 0 and ran no test (every test, or the whole plan, skipped).
	Skip Verdict = "skip"
	// Fail: a test failed, the program exited non-zero or timed out, or its TAP output
	// did not add up to its plan.
	Fail Verdict = "fail"
)

// Run is one program run with one runtime.
type Run struct {
	TAP TAP
	// ExitCode is the program's exit status; -1 when it was killed or did not start.
	ExitCode int
	// Err says why the program did not run to its end (timeout, start failure); "" when it did.
	Err string
	// Leaked names the containers the runtime still listed after the program ended.
	Leaked []string
}

// Verdict judges r.
func (r Run) Verdict() Verdict {
	t := r.TAP
	switch {
	case r.Err != "" || r.ExitCode != 0 || t.Failed > 0 || t.Plan < 0:
		return Fail
	case t.Executed()+t.Skipped != t.Plan:
		return Fail
	case t.Executed() == 0:
		return Skip
	}
	return Pass
}

// Summary is r in a table cell: the verdict, passed of executed, skipped, and why it
// ended early.
func (r Run) Summary() string {
	t := r.TAP
	s := fmt.Sprintf("%s %d/%d", r.Verdict(), t.Passed, t.Executed())
	if t.Skipped > 0 {
		s += fmt.Sprintf(", %d skipped", t.Skipped)
	}
	switch {
	case r.Err != "":
		s += " (" + r.Err + ")"
	case r.ExitCode != 0:
		s += fmt.Sprintf(" (exit %d)", r.ExitCode)
	case t.Plan >= 0 && t.Executed()+t.Skipped != t.Plan:
		s += fmt.Sprintf(" (plan %d)", t.Plan)
	}
	if len(r.Leaked) > 0 {
		s += fmt.Sprintf(", left %d container(s)", len(r.Leaked))
	}
	return s
}

// Known lists the programs (or, for bats, single tests) expected to fail with Vessel where
// runc passes, each with the reason: a feature that cannot work in a VM by design, or an
// open gap. A runtime-tools program is listed by its name, a bats test as
// "bats:FILE.bats:TEST NAME" (BatsKey).
type Known map[string]string

// ParseKnown reads a known-failures list: one "entry: reason" per line, the entry ending
// at the line's first ": "; blank lines and lines starting with '#' are ignored. A line
// without a reason or an entry listed twice is an error naming the line.
func ParseKnown(r io.Reader) (Known, error) {
	k := Known{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		prog, reason, ok := strings.Cut(line, ": ")
		prog, reason = strings.TrimSpace(prog), strings.TrimSpace(reason)
		if !ok || prog == "" || reason == "" {
			return nil, fmt.Errorf("line %d: want \"entry: reason\", got %q", n, line)
		}
		if _, dup := k[prog]; dup {
			return nil, fmt.Errorf("line %d: %s is listed twice", n, prog)
		}
		k[prog] = reason
	}
	return k, sc.Err()
}

// Status is how a program's Vessel result compares with runc's.
type Status string

const (
	// Same: Vessel did at least as well as runc and left nothing behind.
	Same Status = "same"
	// Regression: runc passed and Vessel did not, Vessel passed fewer tests than runc, or
	// Vessel left containers behind, and the known-failures list does not explain it.
	Regression Status = "regression"
	// Expected: a regression the known-failures list explains.
	Expected Status = "known"
	// Stale: the known-failures list names the program, but Vessel did as well as runc:
	// the entry must go.
	Stale Status = "stale"
)

// Row is one program's results side by side.
type Row struct {
	Program      string
	Runc, Vessel Run
	Status       Status
	// Reason is the known-failures entry for the program, if any.
	Reason string
	// Tests are, for a suite compared test by test (CompareTests), the tests Vessel did
	// worse on and the listed tests it did not.
	Tests []TestRow
}

// TestRow is one test's results side by side, for a suite compared test by test.
type TestRow struct {
	Name         string
	Runc, Vessel Verdict
	Status       Status
	Reason       string
}

// BatsKey is the known-failures entry of one test of a bats file.
func BatsKey(file, test string) string { return "bats:" + file + ".bats:" + test }

// BatsKnownFile reports whether a known-failures entry names a test of file, or file
// itself ("bats:FILE.bats", for a file that leaves containers behind).
func BatsKnownFile(entry, file string) bool {
	p := "bats:" + file + ".bats"
	return entry == p || strings.HasPrefix(entry, p+":")
}

// CompareTests judges one bats file's pair of runs test by test: a test runc passed that
// Vessel did not pass (failed, skipped, or never reached) is a regression unless known
// lists BatsKey(file, test); a listed test Vessel passed, or runc did not run, is stale; a
// listed test that neither runtime passed is not judged. The
// file is a regression too when Vessel left containers behind, unless known lists the
// file itself. The row's status is its worst test's.
func CompareTests(file string, runc, vessel Run, known Known) Row {
	row := Row{Program: file, Runc: runc, Vessel: vessel, Status: Same}
	got := map[string]Verdict{}
	for _, t := range vessel.TAP.Tests {
		got[t.Name] = t.Outcome
	}
	seen := map[string]bool{}
	var nKnown int
	for _, t := range runc.TAP.Tests {
		if seen[t.Name] {
			continue
		}
		seen[t.Name] = true
		key := BatsKey(file, t.Name)
		reason, listed := known[key]
		v, ran := got[t.Name]
		if !ran {
			v = Fail
		}
		tr := TestRow{Name: t.Name, Runc: t.Outcome, Vessel: v, Reason: reason}
		worse := t.Outcome == Pass && v != Pass
		switch {
		case worse && listed:
			tr.Status = Expected
			nKnown++
		case worse:
			tr.Status = Regression
		case listed && v != Pass && t.Outcome != Pass:
			// The reference did not pass this time (runc's tests can be flaky under load):
			// the entry is neither confirmed nor refuted.
			continue
		case listed:
			tr.Status = Stale
		default:
			continue
		}
		row.Tests = append(row.Tests, tr)
	}
	for key, reason := range known {
		if BatsKnownFile(key, file) && key != "bats:"+file+".bats" && !seen[strings.TrimPrefix(key, "bats:"+file+".bats:")] {
			row.Tests = append(row.Tests, TestRow{Name: strings.TrimPrefix(key, "bats:"+file+".bats:"), Status: Stale, Reason: reason + " (runc ran no such test)"})
		}
	}
	fileReason, fileListed := known["bats:"+file+".bats"]
	switch {
	case len(vessel.Leaked) > 0 && fileListed:
		row.Reason = fileReason
		row.Status = Expected
	case len(vessel.Leaked) > 0:
		row.Status = Regression
	case fileListed:
		row.Tests = append(row.Tests, TestRow{Name: "(file)", Status: Stale, Reason: fileReason + " (Vessel left nothing behind)"})
	}
	for _, tr := range row.Tests {
		row.Status = worst(row.Status, tr.Status)
	}
	if nKnown > 0 && row.Reason == "" {
		row.Reason = fmt.Sprintf("%d known", nKnown)
	}
	return row
}

// worst orders statuses by how much they need attention.
func worst(a, b Status) Status {
	rank := map[Status]int{Same: 0, Expected: 1, Stale: 2, Regression: 3}
	if rank[b] > rank[a] {
		return b
	}
	return a
}

// Compare judges one program's pair of runs against the known failures.
func Compare(program string, runc, vessel Run, known Known) Row {
	reason, listed := known[program]
	// Test descriptions may hold run-specific text (paths, pids), so tests are compared by
	// count: Vessel passing fewer than runc is worse even when both runs failed.
	worse := (runc.Verdict() == Pass && vessel.Verdict() != Pass) ||
		vessel.TAP.Passed < runc.TAP.Passed || len(vessel.Leaked) > 0
	row := Row{Program: program, Runc: runc, Vessel: vessel, Reason: reason}
	switch {
	case worse && listed:
		row.Status = Expected
	case worse:
		row.Status = Regression
	case listed:
		row.Status = Stale
	default:
		row.Status = Same
	}
	return row
}

// Result is a whole run.
type Result struct {
	Suite string
	Rows  []Row
	// Unlisted are known-failures entries naming no program of a full run.
	Unlisted []string
}

// Totals counts the tests each runtime executed and passed.
func (r Result) Totals() (runcPassed, runcExecuted, vesselPassed, vesselExecuted int) {
	for _, row := range r.Rows {
		runcPassed += row.Runc.TAP.Passed
		runcExecuted += row.Runc.TAP.Executed()
		vesselPassed += row.Vessel.TAP.Passed
		vesselExecuted += row.Vessel.TAP.Executed()
	}
	return
}

// Problems lists what makes the run fail: regressions, stale or unlisted known-failures
// entries, and a runtime that executed no test at all (an offline or broken run proves
// nothing).
func (r Result) Problems() []string {
	var p []string
	for _, row := range r.Rows {
		if row.Tests != nil {
			for _, t := range row.Tests {
				switch t.Status {
				case Regression:
					p = append(p, fmt.Sprintf("%s: %s: runc %s, Vessel %s", row.Program, t.Name, t.Runc, t.Vessel))
				case Stale:
					p = append(p, fmt.Sprintf("%s: %s: listed as a known failure (%s) but Vessel %s and runc %s: remove the entry",
						row.Program, t.Name, t.Reason, t.Vessel, t.Runc))
				}
			}
			if len(row.Vessel.Leaked) > 0 && row.Reason == "" {
				p = append(p, fmt.Sprintf("%s: Vessel left %s behind", row.Program, strings.Join(row.Vessel.Leaked, ", ")))
			}
			continue
		}
		switch row.Status {
		case Regression:
			p = append(p, fmt.Sprintf("%s: runc %s, Vessel %s", row.Program, row.Runc.Summary(), row.Vessel.Summary()))
		case Stale:
			p = append(p, fmt.Sprintf("%s: listed as a known failure (%s) but Vessel %s and runc %s: remove the entry",
				row.Program, row.Reason, row.Vessel.Summary(), row.Runc.Summary()))
		}
	}
	for _, u := range r.Unlisted {
		p = append(p, fmt.Sprintf("%s: listed as a known failure but no such program ran", u))
	}
	_, runcExec, _, vesselExec := r.Totals()
	if len(r.Rows) > 0 && runcExec == 0 {
		p = append(p, "runc executed no test")
	}
	if len(r.Rows) > 0 && vesselExec == 0 {
		p = append(p, "Vessel executed no test")
	}
	if len(r.Rows) == 0 {
		p = append(p, "no program ran")
	}
	return p
}

// Markdown writes the table: per program runc's and Vessel's result and the status, then
// totals, then the failed tests of every program Vessel did worse on.
func (r Result) Markdown(w io.Writer) error {
	var b strings.Builder
	rp, re, vp, ve := r.Totals()
	fmt.Fprintf(&b, "## %s\n\n", r.Suite)
	fmt.Fprintf(&b, "%d programs; tests executed and passed: runc %d/%d, Vessel %d/%d.\n\n", len(r.Rows), rp, re, vp, ve)
	b.WriteString("| program | runc | Vessel | status |\n| --- | --- | --- | --- |\n")
	for _, row := range r.Rows {
		status := string(row.Status)
		if row.Reason != "" {
			status += ": " + row.Reason
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", row.Program, cell(row.Runc.Summary()), cell(row.Vessel.Summary()), cell(status))
	}
	var details strings.Builder
	for _, row := range r.Rows {
		if row.Status == Same || (row.Status == Stale && row.Tests == nil) {
			continue
		}
		fmt.Fprintf(&details, "\n### %s\n\n", row.Program)
		if row.Tests != nil {
			for _, t := range row.Tests {
				fmt.Fprintf(&details, "- %s (runc %s, Vessel %s): %s", t.Name, t.Runc, t.Vessel, t.Status)
				if t.Reason != "" {
					fmt.Fprintf(&details, ": %s", t.Reason)
				}
				details.WriteString("\n")
			}
		}
		for _, f := range row.Vessel.TAP.Failures {
			if row.Tests != nil {
				break
			}
			fmt.Fprintf(&details, "- not ok: %s\n", f)
		}
		if row.Vessel.Err != "" {
			fmt.Fprintf(&details, "- %s\n", row.Vessel.Err)
		}
		for _, c := range row.Vessel.Leaked {
			fmt.Fprintf(&details, "- left behind: %s\n", c)
		}
	}
	if details.Len() > 0 {
		b.WriteString("\nWhere Vessel did worse than runc, or a known failure no longer holds:\n")
		b.WriteString(details.String())
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// cell keeps a table cell on one line and its pipes out of the table's syntax.
func cell(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}
