package suite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vessel-containers/vessel/internal/bundle"
)

// RuncModule is the Go module whose tests/integration directory holds runc's bats suite.
const RuncModule = "github.com/opencontainers/runc"

// batsHelpers are the programs of runc's contrib/cmd the bats files call through
// helpers.bash ($RECVTTY, $SD_HELPER, $SECCOMP_AGENT), built next to their source as
// helpers.bash expects.
var batsHelpers = []string{"recvtty", "sd-helper", "seccompagent"}

// batsPrepRevision changes with the changes Prepare makes to the suite, so a tree
// prepared by an older harness is prepared again.
const batsPrepRevision = " prep 2"

// offlineSkips are the tests that fetch from the internet (a git clone of runtime-spec),
// per file; the run skips them, since nothing outside the machine may be contacted.
var offlineSkips = map[string][]string{
	"spec": {"spec validator"},
}

// debianSkip is the skip reason setup_debian gets: the suite's Debian image is
// downloaded from the internet, and the run builds only a busybox image locally.
const debianSkip = "no debian image: the conformance run builds only a busybox image, offline"

// Bats is runc's bats integration suite at one runc module version, prepared in Dir: the
// module's source in Dir/src (tests/integration, the contrib helpers built in place) and
// the busybox root file system tarball the tests unpack into every bundle, built from
// Debian's busybox-static in Dir/busybox.tar.
type Bats struct {
	Version string
	Dir     string
	// Tests, when not nil, selects the tests Run runs in a file by name (bats --filter).
	Tests *regexp.Regexp
}

func (b Bats) src() string   { return filepath.Join(b.Dir, "src") }
func (b Bats) tests() string { return filepath.Join(b.src(), "tests", "integration") }
func (b Bats) image() string { return filepath.Join(b.Dir, "busybox.tar") }

// Prepare downloads runc's module through the Go module proxy, builds the contrib helpers
// the tests call, builds the busybox image, points the suite at it (its get-images.sh,
// which downloads images, is replaced by one naming the local image; setup_debian skips
// with debianSkip; the tests in offlineSkips skip; create_parent makes cgroups only in
// mounted hierarchies), and returns the bats files' names without ".bats", sorted, and the
// helpers that did not build (the tests needing them fail or skip with both runtimes).
// A preparation of the same version already in Dir is reused.
func (b Bats) Prepare(ctx context.Context) (files, unbuilt []string, err error) {
	marker := filepath.Join(b.Dir, builtMarker)
	if m, err := os.ReadFile(marker); err == nil {
		v, rest, _ := strings.Cut(string(m), "\n")
		if v == b.Version+batsPrepRevision {
			files, err := b.files()
			return files, strings.Fields(rest), err
		}
	}
	if err := os.RemoveAll(b.Dir); err != nil {
		return nil, nil, err
	}
	if err := os.MkdirAll(b.Dir, 0o755); err != nil {
		return nil, nil, err
	}
	modDir, err := downloadModule(ctx, RuncModule+"@"+b.Version)
	if err != nil {
		return nil, nil, err
	}
	// The module cache is read-only and the suite writes next to its tests: use a copy.
	if err := os.CopyFS(b.src(), os.DirFS(modDir)); err != nil {
		return nil, nil, fmt.Errorf("copy %s: %w", modDir, err)
	}
	for _, h := range batsHelpers {
		// Module zips carry no vendor directory: build against the module graph.
		dir := filepath.Join("contrib", "cmd", h)
		if err := goBuild(ctx, b.src(), nil, "-o", filepath.Join(b.src(), dir, h), "./"+dir); err != nil {
			fmt.Fprintf(os.Stderr, "bats: helper %s not built: %v\n", h, err)
			unbuilt = append(unbuilt, h)
		}
	}
	if err := buildBatsImage(ctx, filepath.Join(b.Dir, "rootfs"), b.image()); err != nil {
		return nil, nil, err
	}
	getImages := fmt.Sprintf("#!/bin/bash\n# Written by vesselconformance: the images are built locally, nothing is downloaded.\necho BUSYBOX_IMAGE=%s\necho DEBIAN_IMAGE=\n", b.image())
	// The module zip keeps no file modes: the script is made executable explicitly.
	gi := filepath.Join(b.tests(), "get-images.sh")
	if err := errors.Join(os.WriteFile(gi, []byte(getImages), 0o755), os.Chmod(gi, 0o755)); err != nil {
		return nil, nil, err
	}
	if err := patchFile(filepath.Join(b.tests(), "helpers.bash"),
		"function setup_debian() {\n", "function setup_debian() {\n\tskip \""+debianSkip+"\"\n"); err != nil {
		return nil, nil, err
	}
	// create_parent makes the pod parent cgroup in every hierarchy /proc/cgroups lists; a
	// controller the host does not mount (hugetlb, net_cls, perf_event here) then becomes
	// a plain directory on /sys/fs/cgroup's tmpfs, which cgroup libraries take for a
	// hierarchy: other users of the machine's cgroups break. Only mounted ones are used.
	if err := patchFile(filepath.Join(b.tests(), "helpers.bash"),
		"\t\t\t\tmkdir -p \"/sys/fs/cgroup/$subsys$REL_PARENT_PATH\"\n",
		"\t\t\t\tmountpoint -q \"/sys/fs/cgroup/$subsys\" || continue\n\t\t\t\tmkdir -p \"/sys/fs/cgroup/$subsys$REL_PARENT_PATH\"\n"); err != nil {
		return nil, nil, err
	}
	for file, tests := range offlineSkips {
		for _, t := range tests {
			at := "@test \"" + t + "\" {\n"
			if err := patchFile(filepath.Join(b.tests(), file+".bats"), at,
				at+"\tskip \"fetches from the internet: the conformance run is offline\"\n"); err != nil {
				return nil, nil, err
			}
		}
	}
	if files, err = b.files(); err != nil {
		return nil, nil, err
	}
	if len(files) == 0 {
		return nil, nil, fmt.Errorf("%s@%s has no bats file in tests/integration", RuncModule, b.Version)
	}
	return files, unbuilt, os.WriteFile(marker, []byte(b.Version+batsPrepRevision+"\n"+strings.Join(unbuilt, " ")), 0o644)
}

func (b Bats) files() ([]string, error) {
	m, err := filepath.Glob(filepath.Join(b.tests(), "*.bats"))
	if err != nil {
		return nil, err
	}
	var files []string
	for _, f := range m {
		files = append(files, strings.TrimSuffix(filepath.Base(f), ".bats"))
	}
	slices.Sort(files)
	return files, nil
}

// patchFile replaces the one occurrence of old in path with repl; it fails when old is
// not there exactly once, so a changed upstream file is noticed.
func patchFile(path, old, repl string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if n := bytes.Count(b, []byte(old)); n != 1 {
		return fmt.Errorf("patch %s: %q occurs %d times, want once", path, old, n)
	}
	return os.WriteFile(path, bytes.Replace(b, []byte(old), []byte(repl), 1), 0o644)
}

// The account files of the image runc's tests were written for (Docker's busybox): the
// tests expect uid 1000 to have no name ("uid=1000 gid=1000").
//
//nolint:gosec // account files of a test image, no secrets
const (
	batsPasswd = `root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
`
	batsGroup = `root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
lp:x:7:
mail:x:8:
kmem:x:9:
wheel:x:10:root
cdrom:x:11:
dialout:x:18:
floppy:x:19:
video:x:28:
audio:x:29:
tape:x:32:
www-data:x:33:
operator:x:37:
utmp:x:43:
plugdev:x:46:
staff:x:50:
lock:x:54:
netdev:x:82:
users:x:100:
nogroup:x:65534:
`
)

// buildBatsImage builds the busybox root file system in rootfs (Debian's busybox-static,
// Docker busybox's accounts) and archives it, owned by root, into image.
func buildBatsImage(ctx context.Context, rootfs, image string) error {
	if err := bundle.BuildBusyboxRootfs(rootfs, ""); err != nil {
		return fmt.Errorf("busybox rootfs: %w", err)
	}
	for name, content := range map[string]string{"etc/passwd": batsPasswd, "etc/group": batsGroup} {
		if err := os.WriteFile(filepath.Join(rootfs, name), []byte(content), 0o644); err != nil {
			return fmt.Errorf("busybox rootfs: %w", err)
		}
	}
	cmd := exec.CommandContext(ctx, "tar", "--owner=0", "--group=0", "--numeric-owner", "-C", rootfs, "-cf", image, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("tar busybox image: %w: %s", err, out)
	}
	return nil
}

// Run runs one bats file (name without ".bats") against r with a time limit: `bats --tap`
// with RUNC set to r's command, its stdin the slave of a new pseudo terminal that is the
// session's controlling terminal (the tests start terminal containers without a console
// socket, as runc's CI does under script(1)), and TMPDIR a fresh short directory (runc's
// tests put unix sockets below it). Afterwards every process whose command line still
// names that directory (a container's VM, monitor or helper the tests did not delete) is
// recorded as leaked and killed, and every state root left there is listed and its
// containers force-deleted, recorded as leaked too.
func (b Bats) Run(ctx context.Context, file string, r Runtime, limit time.Duration) Run {
	var res Run
	tmp, err := os.MkdirTemp("", "vbats-")
	if err != nil {
		return Run{TAP: TAP{Plan: -1}, ExitCode: -1, Err: err.Error()}
	}
	defer os.RemoveAll(tmp)
	pty, tty, err := openPTY()
	if err != nil {
		return Run{TAP: TAP{Plan: -1}, ExitCode: -1, Err: err.Error()}
	}
	// Whatever the tests write to the terminal is read and dropped, so they never block
	// on a full terminal buffer; the reader ends when pty is closed below.
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		buf := make([]byte, 4096)
		for {
			if _, err := pty.Read(buf); err != nil {
				return
			}
		}
	}()

	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	// runCtx also ends LingerDelay after the last test reported: a helper a failed test
	// left running (recvtty waiting for a console) keeps bats' output pipe open, and bats
	// with it, although every test is done.
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	args := []string{"--tap", "--no-tempdir-cleanup"}
	if b.Tests != nil {
		args = append(args, "--filter", b.Tests.String())
	}
	cmd := exec.CommandContext(runCtx, "bats", append(args, file+".bats")...)
	cmd.Dir = b.tests()
	// No BATS_TEST_TIMEOUT: its watchdog is a background job of the test's shell, so a
	// test that runs `wait` (events.bats) would wait for the watchdog and time out.
	cmd.Env = append(os.Environ(), "RUNC="+r.Command, "TMPDIR="+tmp)
	stdout := &tapWatch{done: make(chan struct{})}
	var stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, stdout, &stderr
	// bats leads a session of its own, so the limit kills it and every process the tests
	// started in its process group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	exited := make(chan struct{})
	lingered := make(chan bool, 1)
	go func() {
		select {
		case <-stdout.done:
		case <-exited:
			lingered <- false
			return
		}
		select {
		case <-time.After(LingerDelay):
			stopRun()
			lingered <- true
		case <-exited:
			lingered <- false
		}
	}()
	runErr := cmd.Run()
	close(exited)
	killedLingering := <-lingered
	tty.Close()

	out := stdout.Bytes()
	if err := b.keepOutput(r.Name, file, out, stderr.Bytes()); err != nil {
		res.Err = err.Error()
	}
	res.TAP, _ = ParseTAP(bytes.NewReader(out))
	var exitErr *exec.ExitError
	switch {
	case ctx.Err() != nil:
		res.ExitCode, res.Err = -1, fmt.Sprintf("timed out after %s", limit)
	case killedLingering:
		// Every test reported; bats would have exited 1 on a failed test.
		if res.TAP.Failed > 0 {
			res.ExitCode = 1
		}
	case errors.As(runErr, &exitErr):
		res.ExitCode = exitErr.ExitCode()
		if res.TAP.Plan < 0 {
			res.Err = "no TAP plan: " + lastLine(stderr.String())
		}
	case runErr != nil:
		res.ExitCode, res.Err = -1, runErr.Error()
	}
	cleanCtx := context.WithoutCancel(ctx)
	res.Leaked = append(res.Leaked, cleanRoots(cleanCtx, r, tmp)...)
	res.Leaked = append(res.Leaked, killNaming(tmp)...)
	pty.Close()
	<-drained
	return res
}

// LingerDelay is how long bats may keep running after its last test reported.
const LingerDelay = 20 * time.Second

// tapWatch collects bats' TAP output and closes done once the plan's every test has
// reported.
type tapWatch struct {
	mu sync.Mutex
	// buf, line, plan, seen and closed are guarded by mu.
	buf        bytes.Buffer
	line       []byte
	plan, seen int
	closed     bool
	done       chan struct{}
}

func (w *tapWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for _, c := range p {
		if c != '\n' {
			w.line = append(w.line, c)
			continue
		}
		l := strings.TrimRight(string(w.line), "\r")
		w.line = w.line[:0]
		if m := planLine.FindStringSubmatch(l); m != nil {
			w.plan, _ = strconv.Atoi(m[1])
			w.plan++ // counted from 1 so that 0 means no plan yet
		} else if testLine.MatchString(l) {
			w.seen++
		}
		if w.plan > 0 && w.seen >= w.plan-1 && !w.closed {
			w.closed = true
			close(w.done)
		}
	}
	return len(p), nil
}

// Bytes is everything written so far.
func (w *tapWatch) Bytes() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return bytes.Clone(w.buf.Bytes())
}

// LogDir holds each run's output: RUNTIME-FILE.tap (the TAP stream, with the failed tests'
// diagnostics) and RUNTIME-FILE.stderr.
func (b Bats) LogDir() string { return filepath.Join(b.Dir, "logs") }

func (b Bats) keepOutput(runtime, file string, stdout, stderr []byte) error {
	if err := os.MkdirAll(b.LogDir(), 0o755); err != nil {
		return err
	}
	base := filepath.Join(b.LogDir(), runtime+"-"+file)
	return errors.Join(os.WriteFile(base+".tap", stdout, 0o644), os.WriteFile(base+".stderr", stderr, 0o644))
}

// cleanRoots lists the containers of every state root the tests left below tmp
// (helpers.bash makes TMPDIR/bats-run-*/runc.*/state per test) and force-deletes them.
func cleanRoots(ctx context.Context, r Runtime, tmp string) []string {
	roots, _ := filepath.Glob(filepath.Join(tmp, "bats-run-*", "runc.*", "state"))
	var leaked []string
	for _, root := range roots {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		out, err := exec.CommandContext(ctx, r.Command, "--root", root, "list", "-q").Output()
		if err != nil {
			cancel()
			continue // a state root the runtime does not recognise holds nothing it runs
		}
		for _, id := range strings.Fields(string(out)) {
			// Best effort: the id is reported as leaked whether or not this succeeds.
			_ = exec.CommandContext(ctx, r.Command, "--root", root, "delete", "--force", id).Run()
			leaked = append(leaked, "container "+id)
		}
		cancel()
	}
	return leaked
}

// killNaming kills every process whose command line contains dir (the run's own
// leftovers, since dir is the run's fresh TMPDIR) and returns a description of each but
// the test helpers (batsHelpers).
func killNaming(dir string) []string {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return []string{"(cannot list processes: " + err.Error() + ")"}
	}
	self := os.Getpid()
	var leaked []string
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(b, []byte(dir)) {
			continue
		}
		args := strings.Fields(string(bytes.ReplaceAll(b, []byte{0}, []byte{' '})))
		name := "?"
		if len(args) > 0 {
			name = filepath.Base(args[0])
		}
		// A test helper a failed test left running is the test's leftover, not the
		// runtime's: killed, not reported.
		if syscall.Kill(pid, syscall.SIGKILL) == nil && !slices.Contains(batsHelpers, name) {
			leaked = append(leaked, fmt.Sprintf("process %d (%s)", pid, name))
		}
	}
	return leaked
}
