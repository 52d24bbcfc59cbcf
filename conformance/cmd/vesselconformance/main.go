// Binary vesselconformance runs the OCI runtime-tools validation programs against runc
// (the reference) and Vessel on this machine, program by program, and compares the
// results: every program that passes with runc must pass with Vessel, unless the
// known-failures list explains why not. It writes the side-by-side table to
// OUT/runtime-tools.md (and to -doc when given) and exits non-zero when Vessel does worse
// than runc without an explanation, when a known-failures entry no longer fails, or when
// either runtime executed no test. Vessel runs with the guest image in -guest-dir and a
// configuration of its own, never the host's. Run it as root after `make build image`.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/vessel-containers/vessel/conformance/internal/suite"
)

// runtimeToolsVersion pins the suite: the module version of runtime-tools' main branch
// the table was made with.
const runtimeToolsVersion = "v0.9.1-0.20251205004911-5e639034dcdc"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "vesselconformance:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		out      = flag.String("out", "_output/conformance", "directory for the suite's build, the runtimes' state and the results")
		binDir   = flag.String("bin", "_output/bin", "directory holding vessel and containerd-shim-vessel-v2")
		guestDir = flag.String("guest-dir", "/var/lib/vessel/guest", "directory holding the guest vmlinux and initramfs.img")
		runcBin  = flag.String("runc", "runc", "the reference runtime")
		known    = flag.String("known", "conformance/known-failures.txt", "known-failures list: \"program: reason\" per line")
		only     = flag.String("run", "", "run only the programs whose names match this regular expression (entries of the known-failures list for programs not run are not checked)")
		limit    = flag.Duration("timeout", 10*time.Minute, "time limit per program and runtime")
		doc      = flag.String("doc", "", "also write the table into this Markdown file (docs/conformance.md), below its fixed introduction")
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

	rt := suite.RuntimeTools{Version: runtimeToolsVersion, Dir: filepath.Join(outDir, "runtime-tools")}
	fmt.Printf("building %s@%s\n", suite.RuntimeToolsModule, rt.Version)
	progs, err := rt.Prepare(ctx)
	if err != nil {
		return err
	}
	res := suite.Result{Suite: "OCI runtime-tools validation (" + rt.Version + ")"}
	ran := map[string]bool{}
	for _, p := range progs {
		if filter != nil && !filter.MatchString(p) {
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		ran[p] = true
		r := rt.Run(ctx, p, runtimes[0], *limit)
		v := rt.Run(ctx, p, runtimes[1], *limit)
		row := suite.Compare(p, r, v, k)
		fmt.Printf("%-40s runc %-28s vessel %-28s %s\n", p, r.Summary(), v.Summary(), row.Status)
		res.Rows = append(res.Rows, row)
	}
	if filter == nil {
		for p := range k {
			if !ran[p] {
				res.Unlisted = append(res.Unlisted, p)
			}
		}
	}

	var md bytes.Buffer
	if err := res.Markdown(&md); err != nil {
		return err
	}
	table := filepath.Join(outDir, "runtime-tools.md")
	if err := os.WriteFile(table, md.Bytes(), 0o644); err != nil {
		return err
	}
	if *doc != "" {
		if err := writeDoc(*doc, md.Bytes()); err != nil {
			return err
		}
	}
	rp, re, vp, ve := res.Totals()
	fmt.Printf("\n%d programs; tests passed/executed: runc %d/%d, Vessel %d/%d; table in %s\n", len(res.Rows), rp, re, vp, ve, table)
	if p := res.Problems(); len(p) > 0 {
		return fmt.Errorf("where Vessel does worse than runc:\n  %s", strings.Join(p, "\n  "))
	}
	return nil
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

// writeDoc replaces everything below the marker in path with table.
func writeDoc(path string, table []byte) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	head, _, ok := bytes.Cut(b, []byte(docMarker))
	if !ok {
		return fmt.Errorf("%s has no line %q", path, docMarker)
	}
	doc := append(append(head, docMarker+"\n\n"...), table...)
	return os.WriteFile(path, doc, 0o644)
}
