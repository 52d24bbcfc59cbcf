// Binary vesselconformance runs public conformance suites (the OCI runtime-tools
// validation programs, runc's bats tests, containerd's integration/client tests) against
// runc (the reference) and Vessel on this machine and compares the results: every
// program or test that passes with runc must pass with Vessel, unless the known-failures
// list explains why not. It writes each suite's side-by-side table to OUT/SUITE.md (and
// to -doc when given) and exits non-zero when Vessel does worse
// than runc without an explanation, when a known-failures entry no longer fails, or when
// either runtime executed no test. Vessel runs with the guest image in -guest-dir and a
// configuration of its own, never the host's. Run it as root after `make build image`.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/vessel-containers/vessel/conformance/internal/suite"
	"github.com/vessel-containers/vessel/internal/config"
	"github.com/vessel-containers/vessel/internal/ctrdproc"
)

// runtimeToolsVersion pins the suite: the module version of runtime-tools' main branch
// the table was made with.
const runtimeToolsVersion = "v0.9.1-0.20251205004911-5e639034dcdc"

// runcVersion pins runc's bats suite to the reference runtime installed on the machine
// (Debian 12's runc 1.1.5).
const runcVersion = "v1.1.5"

// containerdVersion pins containerd's integration/client tests to the containerd the
// machine runs (Debian 12's containerd 1.6.20). Their sources come from -containerd-client:
// the Go module proxy does not serve that nested module, so the caller provides a checkout.
const containerdVersion = "v1.6.20"

// The suites' table headings; writeDoc replaces a suite's section by its heading.
const (
	runtimeToolsTitle = "OCI runtime-tools validation"
	batsTitle         = "runc bats integration tests"
	containerdTitle   = "containerd integration/client tests"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "vesselconformance:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		out       = flag.String("out", "_output/conformance", "directory for the suite's build, the runtimes' state and the results")
		binDir    = flag.String("bin", "_output/bin", "directory holding vessel and containerd-shim-vessel-v2")
		guestDir  = flag.String("guest-dir", "/var/lib/vessel/guest", "directory holding the guest vmlinux and initramfs.img")
		runcBin   = flag.String("runc", "runc", "the reference runtime")
		known     = flag.String("known", "conformance/known-failures.txt", "known-failures list: \"entry: reason\" per line (a runtime-tools program, bats:FILE.bats:TEST, or containerd:TEST)")
		only      = flag.String("run", "", "run only the runtime-tools programs, bats files (name without .bats) and containerd client tests matching this regular expression (known-failures entries for what did not run are not checked)")
		limit     = flag.Duration("timeout", 10*time.Minute, "time limit per runtime-tools program and runtime")
		batsLimit = flag.Duration("bats-timeout", 15*time.Minute, "time limit per bats file and runtime")
		batsSkip  = flag.String("bats-skip", defaultBatsSkip, "bats files (name without .bats) not to run, a regular expression; \"\" runs them all")
		batsTests = flag.String("bats-tests", "", "run only the bats tests whose name matches this regular expression (bats --filter) in the files -run selects (known-failures entries for the other tests are not checked)")
		suites    = flag.String("suites", "runtime-tools,bats,containerd", "comma-separated suites to run: runtime-tools, bats, containerd")
		ctrClient = flag.String("containerd-client", "", "directory of containerd's integration/client test sources at "+containerdVersion+" (the integration/client directory of a checkout of github.com/containerd/containerd at that tag); without it the containerd suite is not run")
		ctrAgain  = flag.Bool("containerd-rejudge", false, "run no containerd client test: judge the results the last run kept (OUT/containerd/results.json) against the known-failures list again")
		ctrLimit  = flag.Duration("containerd-timeout", 2*time.Minute, "time limit per containerd client test and runtime")
		doc       = flag.String("doc", "", "also write the table into this Markdown file (docs/conformance.md), below its fixed introduction")
	)
	flag.Parse()
	if os.Geteuid() != 0 {
		return fmt.Errorf("run as root: the runtimes create containers")
	}
	var filter *regexp.Regexp
	if *only != "" {
		var err error
		if filter, err = regexp.Compile(*only); err != nil {
			return fmt.Errorf("-run: %w", err)
		}
	}
	k, err := readKnown(*known)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	abs := func(p string) (string, error) { return filepath.Abs(p) }
	outDir, err := abs(*out)
	if err != nil {
		return err
	}
	vesselBin, err := abs(filepath.Join(*binDir, "vessel"))
	if err != nil {
		return err
	}
	runcPath, err := exec.LookPath(*runcBin)
	if err != nil {
		return fmt.Errorf("reference runtime: %w", err)
	}
	runtimes, err := writeWrappers(outDir, runcPath, vesselBin, *guestDir)
	if err != nil {
		return err
	}

	var results []suite.Result
	for _, name := range strings.Split(*suites, ",") {
		var res suite.Result
		switch name {
		case "runtime-tools":
			res, err = runRuntimeTools(ctx, outDir, runtimes, k, filter, *limit)
		case "bats":
			var skip *regexp.Regexp
			if *batsSkip != "" {
				if skip, err = regexp.Compile(*batsSkip); err != nil {
					return fmt.Errorf("-bats-skip: %w", err)
				}
			}
			var tests *regexp.Regexp
			if *batsTests != "" {
				if tests, err = regexp.Compile(*batsTests); err != nil {
					return fmt.Errorf("-bats-tests: %w", err)
				}
			}
			res, err = runBats(ctx, outDir, runtimes, k, filter, skip, tests, *batsLimit)
		case "containerd":
			if *ctrClient == "" {
				fmt.Printf("\ncontainerd: not run: containerd's integration/client sources at %s are not on the Go module proxy; pass their directory with -containerd-client (make conformance CONTAINERD_CLIENT=DIR)\n\n", containerdVersion)
				continue
			}
			binAbs, aerr := abs(*binDir)
			if aerr != nil {
				return aerr
			}
			clientAbs, aerr := abs(*ctrClient)
			if aerr != nil {
				return aerr
			}
			env := ctrdproc.Environ(binAbs, config.EnvVar+"="+filepath.Join(outDir, "runtimes", "vessel.toml"))
			res, err = runContainerd(ctx, outDir, clientAbs, env, k, filter, *ctrAgain, *ctrLimit)
		default:
			err = fmt.Errorf("-suites: unknown suite %q, want runtime-tools, bats or containerd", name)
		}
		if err != nil {
			return err
		}
		var md bytes.Buffer
		if err := res.Markdown(&md); err != nil {
			return err
		}
		table := filepath.Join(outDir, name+".md")
		if err := os.WriteFile(table, md.Bytes(), 0o644); err != nil {
			return err
		}
		if *doc != "" {
			if err := writeDoc(*doc, res.Suite, md.Bytes()); err != nil {
				return err
			}
		}
		rp, re, vp, ve := res.Totals()
		fmt.Printf("\n%s: %d programs; tests passed/executed: runc %d/%d, Vessel %d/%d; table in %s\n\n", name, len(res.Rows), rp, re, vp, ve, table)
		results = append(results, res)
	}
	var problems []string
	for _, res := range results {
		for _, p := range res.Problems() {
			problems = append(problems, res.Suite+": "+p)
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("where Vessel does worse than runc:\n  %s", strings.Join(problems, "\n  "))
	}
	return nil
}

// runRuntimeTools runs the OCI runtime-tools validation programs matching filter (all
// when nil) with both runtimes and compares them program by program.
func runRuntimeTools(ctx context.Context, outDir string, runtimes []suite.Runtime, k suite.Known, filter *regexp.Regexp, limit time.Duration) (suite.Result, error) {
	rt := suite.RuntimeTools{Version: runtimeToolsVersion, Dir: filepath.Join(outDir, "runtime-tools")}
	fmt.Printf("building %s@%s\n", suite.RuntimeToolsModule, rt.Version)
	res := suite.Result{Suite: runtimeToolsTitle + " (" + rt.Version + ")"}
	progs, err := rt.Prepare(ctx)
	if err != nil {
		return res, err
	}
	ran := map[string]bool{}
	for _, p := range progs {
		if filter != nil && !filter.MatchString(p) {
			continue
		}
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		ran[p] = true
		r := rt.Run(ctx, p, runtimes[0], limit)
		v := rt.Run(ctx, p, runtimes[1], limit)
		row := suite.Compare(p, r, v, k)
		fmt.Printf("%-40s runc %-28s vessel %-28s %s\n", p, r.Summary(), v.Summary(), row.Status)
		res.Rows = append(res.Rows, row)
	}
	if filter == nil {
		for p := range k {
			if !ran[p] && !strings.HasPrefix(p, "bats:") && !strings.HasPrefix(p, "containerd:") {
				res.Unlisted = append(res.Unlisted, p)
			}
		}
	}
	return res, nil
}

// defaultBatsSkip names the bats files a run leaves out: seccomp-notify.bats and
// seccomp-notify-compat.bats fail with runc itself on this host and hang until the file's
// time limit, so they prove nothing and cost the limit twice.
const defaultBatsSkip = `^seccomp-notify`

// runBats runs runc's bats files matching filter (all when nil) and not skip (none when
// nil), and in them the tests matching tests (all when nil), with both runtimes and
// compares them test by test.
func runBats(ctx context.Context, outDir string, runtimes []suite.Runtime, k suite.Known, filter, skip, tests *regexp.Regexp, limit time.Duration) (suite.Result, error) {
	b := suite.Bats{Version: runcVersion, Dir: filepath.Join(outDir, "bats"), Tests: tests}
	if tests != nil {
		// The entries for tests that do not run are neither confirmed nor refuted.
		k = maps.Clone(k)
		for key := range k {
			if name, ok := strings.CutPrefix(key, "bats:"); ok {
				if _, test, ok := strings.Cut(name, ".bats:"); ok && !tests.MatchString(test) {
					delete(k, key)
				}
			}
		}
	}
	fmt.Printf("preparing %s@%s bats tests\n", suite.RuncModule, b.Version)
	res := suite.Result{Suite: batsTitle + " (" + b.Version + ")"}
	files, unbuilt, err := b.Prepare(ctx)
	if err != nil {
		return res, err
	}
	if len(unbuilt) > 0 {
		fmt.Printf("helpers not built (their tests fail or skip with both runtimes): %s\n", strings.Join(unbuilt, ", "))
	}
	ran := map[string]bool{}
	for _, f := range files {
		if (filter != nil && !filter.MatchString(f)) || (skip != nil && skip.MatchString(f)) {
			continue
		}
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		ran[f] = true
		start := time.Now()
		r := b.Run(ctx, f, runtimes[0], limit)
		mid := time.Now()
		v := b.Run(ctx, f, runtimes[1], limit)
		row := suite.CompareTests(f, r, v, k)
		fmt.Printf("%-24s runc %-26s (%3.0fs) vessel %-34s (%4.0fs) %s\n", f, r.Summary(), mid.Sub(start).Seconds(),
			v.Summary(), time.Since(mid).Seconds(), row.Status)
		res.Rows = append(res.Rows, row)
	}
	if filter == nil && tests == nil {
		for key := range k {
			file, _, ok := strings.Cut(strings.TrimPrefix(key, "bats:"), ".bats")
			if !strings.HasPrefix(key, "bats:") || (ok && skip != nil && skip.MatchString(file)) {
				continue
			}
			if !ok || !ran[file] {
				res.Unlisted = append(res.Unlisted, key)
			}
		}
	}
	return res, nil
}

// runContainerd builds containerd's integration/client tests, serves their images, and
// runs each test matching filter (all when nil) once with runc's shim and once with Vessel's, each time on a fresh
// containerd whose environment is env; it compares them test by test.
func runContainerd(ctx context.Context, outDir, client string, env []string, k suite.Known, filter *regexp.Regexp, rejudge bool, limit time.Duration) (suite.Result, error) {
	c := suite.Containerd{Version: containerdVersion, Dir: filepath.Join(outDir, "containerd"), Client: client}
	fmt.Printf("building %s@%s integration/client tests\n", suite.ContainerdModule, c.Version)
	res := suite.Result{Suite: containerdTitle + " (" + c.Version + ")"}
	tests, err := c.Prepare(ctx)
	if err != nil {
		return res, err
	}
	var names []string
	exists := map[string]bool{}
	for _, t := range tests {
		exists[t.Name] = true
		if filter != nil && !filter.MatchString(t.Name) {
			continue
		}
		names = append(names, t.Name)
	}
	if len(names) == 0 {
		return res, fmt.Errorf("no containerd client test matches -run")
	}
	known := suite.ContainerdKnown(k)
	resultsPath := filepath.Join(c.Dir, "results.json")
	// results.json keeps every test's last pair of runs: a run of some tests replaces
	// their entries and keeps the others'.
	var results []containerdResult
	b, err := os.ReadFile(resultsPath)
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &results); err != nil {
			return res, fmt.Errorf("%s: %w", resultsPath, err)
		}
	case !errors.Is(err, fs.ErrNotExist) || rejudge:
		return res, err
	}
	if rejudge {
		for _, t := range names {
			if i := slices.IndexFunc(results, func(cr containerdResult) bool { return cr.Test == t }); i >= 0 {
				res.Rows = append(res.Rows, suite.Compare(t, results[i].Runc, results[i].Vessel, known))
			}
		}
	} else {
		stop, err := suite.ServeImages(filepath.Join(c.Dir, "image"))
		if err != nil {
			return res, err
		}
		defer stop()
		for _, t := range names {
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			start := time.Now()
			r := c.Run(ctx, "runc", "io.containerd.runc.v2", t, env, limit)
			mid := time.Now()
			v := c.Run(ctx, "vessel", "io.containerd.vessel.v2", t, env, limit)
			row := suite.Compare(t, r, v, known)
			fmt.Printf("%-48s runc %-20s (%3.0fs) vessel %-28s (%4.0fs) %s\n", t, r.Summary(), mid.Sub(start).Seconds(),
				v.Summary(), time.Since(mid).Seconds(), row.Status)
			res.Rows = append(res.Rows, row)
			// Kept after every test, so that an interrupted run's results can be judged too.
			results = slices.DeleteFunc(results, func(cr containerdResult) bool { return cr.Test == t })
			results = append(results, containerdResult{Test: t, Runc: r, Vessel: v})
			b, err := json.MarshalIndent(results, "", "  ")
			if err != nil {
				return res, err
			}
			if err := os.WriteFile(resultsPath, b, 0o644); err != nil {
				return res, err
			}
		}
	}
	for key := range k {
		if t, ok := strings.CutPrefix(key, "containerd:"); ok && !exists[t] {
			res.Unlisted = append(res.Unlisted, key)
		}
	}
	return res, nil
}

// containerdResult is one containerd client test's pair of runs, as results.json keeps it.
type containerdResult struct {
	Test         string
	Runc, Vessel suite.Run
}

func readKnown(path string) (suite.Known, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("known failures: %w", err)
	}
	defer f.Close()
	k, err := suite.ParseKnown(f)
	if err != nil {
		return nil, fmt.Errorf("known failures %s: %w", path, err)
	}
	return k, nil
}

// writeWrappers writes the two runtime commands the programs call: runc and Vessel, each
// with a state root of its own under out (so `list` shows only what the suite made), and
// Vessel with a configuration that boots the guest in guestDir.
func writeWrappers(out, runc, vessel, guestDir string) ([]suite.Runtime, error) {
	dir := filepath.Join(out, "runtimes")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "vessel.toml")
	conf := fmt.Sprintf("[hypervisor]\nkernel = %q\ninitrd = %q\n",
		filepath.Join(guestDir, "vmlinux"), filepath.Join(guestDir, "initramfs.img"))
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	wrappers := []struct{ name, body string }{
		{"runc", fmt.Sprintf("exec %q --root %q \"$@\"\n", runc, filepath.Join(out, "state", "runc"))},
		{"vessel", fmt.Sprintf("exec %q --root %q --config %q \"$@\"\n", vessel, filepath.Join(out, "state", "vessel"), cfg)},
	}
	var rts []suite.Runtime
	for _, w := range wrappers {
		path := filepath.Join(dir, w.name)
		if err := os.WriteFile(path, []byte("#!/bin/sh\n"+w.body), 0o755); err != nil {
			return nil, err
		}
		rts = append(rts, suite.Runtime{Name: w.name, Command: path})
	}
	return rts, nil
}

// docMarker separates docs/conformance.md's hand-written introduction from the generated
// table below it.
const docMarker = "<!-- generated by vesselconformance: everything below this line -->"

// writeDoc replaces, below the marker in path, the section of the suite titled title
// (from its "## title" heading to the next suite's heading) with table, or appends table
// when the section is not there yet; other suites' sections stay.
func writeDoc(path, title string, table []byte) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	head, gen, ok := bytes.Cut(b, []byte(docMarker))
	if !ok {
		return fmt.Errorf("%s has no line %q", path, docMarker)
	}
	var sections [][]byte
	replaced := false
	for _, sec := range splitSections(gen) {
		if sectionTitle(sec) == sectionTitle([]byte("## "+title)) {
			sec, replaced = table, true
		}
		sections = append(sections, sec)
	}
	if !replaced {
		sections = append(sections, table)
	}
	doc := append(append(head, docMarker+"\n"...), bytes.Join(sections, []byte("\n"))...)
	return os.WriteFile(path, doc, 0o644)
}

// splitSections splits the generated part of the doc at its suites' "## " headings.
func splitSections(gen []byte) [][]byte {
	var out [][]byte
	for _, part := range bytes.Split(gen, []byte("\n## ")) {
		if len(bytes.TrimSpace(part)) == 0 {
			continue
		}
		if !bytes.HasPrefix(part, []byte("## ")) {
			part = append([]byte("## "), part...)
		}
		out = append(out, append(bytes.TrimRight(part, "\n"), '\n'))
	}
	return out
}

// sectionTitle is a section heading without its version in parentheses.
func sectionTitle(sec []byte) string {
	line, _, _ := bytes.Cut(sec, []byte("\n"))
	t, _, _ := strings.Cut(string(line), " (")
	return strings.TrimSpace(t)
}
