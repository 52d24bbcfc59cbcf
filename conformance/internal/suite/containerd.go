package suite

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/vessel-containers/vessel/internal/busyboximage"
	"github.com/vessel-containers/vessel/internal/ociregistry"
)

// ContainerdModule is the Go module the integration/client tests are built against.
const ContainerdModule = "github.com/containerd/containerd"

// ContainerdRegistry is the loopback address the run's registry listens on; the test
// sources' image names are rewritten to it at build time, so it is fixed. containerd's
// client pulls from a loopback registry over plain HTTP.
const ContainerdRegistry = "localhost:35032"

// containerdImageHosts are the registries the tests pull from; a name "HOST/x:t" becomes
// "ContainerdRegistry/HOST/x:t".
var containerdImageHosts = []string{"ghcr.io", "k8s.gcr.io", "registry.k8s.io", "gcr.io"}

// ContainerdImages are the image names the tests pull (tags, not digests), all served as
// the busybox image built from Debian's busybox-static: the tests run busybox commands
// in them; tests that check an image's own content or platforms fail with both runtimes.
var ContainerdImages = []string{
	"ghcr.io/containerd/busybox:1.32",
	"ghcr.io/containerd/alpine:3.14.0",
	"ghcr.io/containerd/volume-copy-up:2.1",
	"k8s.gcr.io/pause:3.6",
	"registry.k8s.io/e2e-test-images/busybox:1.29-2",
	"registry.k8s.io/pause-amd64:3.2",
}

// containerdPrepRevision changes with the changes Prepare makes to the tests.
const containerdPrepRevision = " prep 3"

// Containerd is containerd's integration/client suite at one containerd version: the
// main module from the Go module proxy copied into Dir/src, the client tests (Client, a
// directory holding integration/client of the same version) copied into it, and the test
// binary built as Dir/client.test.
type Containerd struct {
	Version string
	Dir     string
	Client  string
}

func (c Containerd) src() string { return filepath.Join(c.Dir, "src") }

func (c Containerd) clientDir() string { return filepath.Join(c.src(), "integration", "client") }

// Binary is the built test binary.
func (c Containerd) Binary() string { return filepath.Join(c.Dir, "client.test") }

// GoTest is one top-level Go test: its name and the source file defining it.
type GoTest struct{ Name, File string }

var testFunc = regexp.MustCompile(`(?m)^func (Test\w+)\(t \*testing\.T\)`)

// Prepare downloads containerd's module, copies the client tests into it, rewrites their
// image names to ContainerdRegistry, builds the test binary, and returns the Linux tests
// (those of *_windows_test.go left out) sorted by name. A preparation of the same version
// already in Dir is reused.
func (c Containerd) Prepare(ctx context.Context) ([]GoTest, error) {
	marker := filepath.Join(c.Dir, builtMarker)
	want := c.Version + containerdPrepRevision + " " + c.Dir
	if m, err := os.ReadFile(marker); err == nil && string(m) == want {
		return c.tests()
	}
	if err := errors.Join(c.removeDaemonDir(), os.RemoveAll(c.Dir)); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return nil, err
	}
	modDir, err := downloadModule(ctx, ContainerdModule+"@"+c.Version)
	if err != nil {
		return nil, err
	}
	if err := os.CopyFS(c.src(), os.DirFS(modDir)); err != nil {
		return nil, fmt.Errorf("copy %s: %w", modDir, err)
	}
	if err := os.CopyFS(c.clientDir(), os.DirFS(c.Client)); err != nil {
		return nil, fmt.Errorf("copy the client tests %s: %w", c.Client, err)
	}
	files, err := filepath.Glob(filepath.Join(c.clientDir(), "*_test.go"))
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		if filepath.Base(f) == "client_unix_test.go" {
			for old, repl := range map[string]string{
				`"/var/lib/containerd-test"`:             fmt.Sprintf("%q", filepath.Join(c.daemonDir(), "root")),
				`"/run/containerd-test"`:                 fmt.Sprintf("%q", filepath.Join(c.daemonDir(), "state")),
				`"/run/containerd-test/containerd.sock"`: fmt.Sprintf("%q", filepath.Join(c.daemonDir(), "c.sock")),
			} {
				if bytes.Count(b, []byte(old)) != 1 {
					return nil, fmt.Errorf("patch %s: %s occurs %d times, want once", f, old, bytes.Count(b, []byte(old)))
				}
				b = bytes.Replace(b, []byte(old), []byte(repl), 1)
			}
		}
		for _, h := range containerdImageHosts {
			b = bytes.ReplaceAll(b, []byte(`"`+h+`/`), []byte(`"`+ContainerdRegistry+`/`+h+`/`))
		}
		if err := os.WriteFile(f, b, 0o644); err != nil {
			return nil, err
		}
	}
	cmd := exec.CommandContext(ctx, "go", "test", "-c", "-o", c.Binary(), ".")
	cmd.Dir = c.clientDir()
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go test -c in %s: %w\n%s", cmd.Dir, err, out)
	}
	tests, err := c.tests()
	if err != nil {
		return nil, err
	}
	if len(tests) == 0 {
		return nil, fmt.Errorf("%s has no test", c.clientDir())
	}
	return tests, os.WriteFile(marker, []byte(want), 0o644)
}

func (c Containerd) tests() ([]GoTest, error) {
	files, err := filepath.Glob(filepath.Join(c.clientDir(), "*_test.go"))
	if err != nil {
		return nil, err
	}
	var tests []GoTest
	for _, f := range files {
		if strings.HasSuffix(f, "_windows_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		for _, m := range testFunc.FindAllSubmatch(b, -1) {
			tests = append(tests, GoTest{Name: string(m[1]), File: filepath.Base(f)})
		}
	}
	sort.Slice(tests, func(i, j int) bool { return tests[i].Name < tests[j].Name })
	return tests, nil
}

// ServeImages builds the busybox layer in work and serves ContainerdImages on
// ContainerdRegistry until stop is called.
func ServeImages(work string) (stop func(), err error) {
	layer, err := busyboximage.Layer(filepath.Join(work, "rootfs"))
	if err != nil {
		return nil, err
	}
	reg := ociregistry.New()
	for _, ref := range ContainerdImages {
		img := ociregistry.Image{Layers: [][]byte{layer}, Config: map[string]any{"Env": []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}, "Cmd": []string{"sh"}}}
		if _, err := reg.Add(ref, img); err != nil {
			return nil, err
		}
	}
	addr := strings.Replace(ContainerdRegistry, "localhost", "127.0.0.1", 1)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("image registry for the containerd tests (the tests' image names name %s): %w", ContainerdRegistry, err)
	}
	srv, done := reg.Serve(ln)
	return func() { _ = srv.Close(); <-done }, nil
}

// daemonDir holds the containerd the test binary starts: the tests' root and state
// directories and socket (their defaultRoot, defaultState and defaultAddress, rewritten by
// Prepare).
func (c Containerd) daemonDir() string { return filepath.Join(c.Dir, "daemon") }

// Run runs one test with the containerd runtime shim runtime ("io.containerd.runc.v2")
// within limit, as a binary run of its own (runOnce), so that a test that hangs or panics
// costs only itself. The test binary starts and stops containerd itself, as containerd's
// CI runs it (tests that restart or kill the daemon need that), on daemonDir, with env as
// its environment, which the daemon and its shims inherit (ctrdproc.Environ: where the
// Vessel shim and its configuration are). The outcome is read from the binary's test2json
// stream, kept in Dir/logs/NAME-TEST.json; what the test left behind is cleaned up and
// recorded in the result.
func (c Containerd) Run(ctx context.Context, name, runtime, test string, env []string, limit time.Duration) Run {
	fail := func(err error) Run { return Run{TAP: TAP{Plan: -1}, ExitCode: -1, Err: err.Error()} }
	logs := filepath.Join(c.Dir, "logs")
	if err := errors.Join(c.removeDaemonDir(), os.MkdirAll(c.daemonDir(), 0o755), os.MkdirAll(logs, 0o755)); err != nil {
		return fail(err)
	}
	logPath := filepath.Join(logs, name+"-"+test+".json")
	runErr, timedOut, leaked, err := c.runOnce(ctx, runtime, test, env, limit, logPath)
	if err != nil {
		return fail(err)
	}
	outcomes := map[string]Verdict{}
	last, err := readTest2JSON(logPath, outcomes)
	if err != nil {
		return fail(err)
	}
	if _, ok := outcomes[test]; !ok && !timedOut && ctx.Err() == nil && len(leaked) == 0 {
		// TestMain gives the daemon 4 seconds to answer, which a loaded host may exceed:
		// a run that reported nothing is tried once more.
		if runErr, timedOut, leaked, err = c.runOnce(ctx, runtime, test, env, limit, logPath); err != nil {
			return fail(err)
		}
		if last, err = readTest2JSON(logPath, outcomes); err != nil {
			return fail(err)
		}
	}
	res := Run{TAP: TAP{Plan: 1}, Leaked: leaked}
	var exitErr *exec.ExitError
	switch v, ok := outcomes[test]; {
	case timedOut:
		res.TAP.Plan, res.ExitCode, res.Err = -1, -1, fmt.Sprintf("timed out after %s", limit)
	case !ok:
		res.TAP.Plan, res.ExitCode, res.Err = -1, -1, fmt.Sprintf("no result (%v): %s", runErr, last)
	case v == Pass:
		res.TAP.Passed = 1
	case v == Skip:
		res.TAP.Skipped = 1
	default:
		res.TAP.Failed, res.TAP.Failures = 1, []string{test}
		if errors.As(runErr, &exitErr) {
			res.ExitCode = exitErr.ExitCode()
		}
	}
	return res
}

// runOnce runs the test binary for test, its test2json stream going to logPath, and
// cleans up after it: it kills every process still naming daemonDir (a shim the test
// left, whose VM dies with it), has the runtime's shim delete every task bundle left in
// the daemon's state (as containerd does after a shim died: runc's shim force-deletes the
// container, Vessel's stops its VM), and removes daemonDir. What it killed or deleted is
// returned as left behind.
func (c Containerd) runOnce(ctx context.Context, runtime, test string, env []string, limit time.Duration, logPath string) (runErr error, timedOut bool, leaked []string, err error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, false, nil, err
	}
	defer logf.Close()
	// The tests' temporary files (TestMain's daemon configuration, which it never removes)
	// go to a directory of the run's own.
	tmp, err := os.MkdirTemp("", "vctr-")
	if err != nil {
		return nil, false, nil, err
	}
	defer os.RemoveAll(tmp)
	runCtx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cmd := exec.CommandContext(runCtx, "go", "tool", "test2json", "-t", "-p", "integration/client", c.Binary(),
		"-test.v=test2json", "-test.root", "-test.run", "^"+regexp.QuoteMeta(test)+"$", "-no-criu")
	cmd.Dir = c.clientDir()
	cmd.Env = append(append([]string{}, env...), "TEST_RUNTIME="+runtime, "TMPDIR="+tmp)
	// The binary leads a process group of its own, so the limit kills it and its daemon.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = logf, &stderr
	runErr = cmd.Run()
	timedOut = runCtx.Err() != nil && ctx.Err() == nil
	_, _ = logf.Write(stderr.Bytes())
	leaked = killNaming(c.daemonDir())
	leaked = append(leaked, c.deleteBundles(context.WithoutCancel(ctx), runtime, env)...)
	if err := c.removeDaemonDir(); err != nil {
		leaked = append(leaked, "(cannot remove the daemon's directory: "+err.Error()+")")
	}
	return runErr, timedOut, leaked, nil
}

// deleteBundles calls the shim of runtime ("io.containerd.runc.v2": containerd-shim-runc-v2,
// looked up in env's PATH) with "delete" for every task bundle left in the daemon's state,
// with the arguments containerd gives it, and returns them as "container NS/ID".
func (c Containerd) deleteBundles(ctx context.Context, runtime string, env []string) []string {
	bundles, _ := filepath.Glob(filepath.Join(c.daemonDir(), "state", "io.containerd.runtime.v2.task", "*", "*"))
	if len(bundles) == 0 {
		return nil
	}
	parts := strings.Split(runtime, ".")
	shim := "containerd-shim-" + strings.Join(parts[len(parts)-2:], "-")
	path := shim
	for _, kv := range env {
		if dirs, ok := strings.CutPrefix(kv, "PATH="); ok {
			for _, d := range filepath.SplitList(dirs) {
				if _, err := os.Stat(filepath.Join(d, shim)); err == nil {
					path = filepath.Join(d, shim)
					break
				}
			}
		}
	}
	var leaked []string
	for _, b := range bundles {
		ns, id := filepath.Base(filepath.Dir(b)), filepath.Base(b)
		ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		cmd := exec.CommandContext(ctx, path, "-namespace", ns, "-address", filepath.Join(c.daemonDir(), "c.sock"),
			"-publish-binary", "containerd", "-id", id, "-bundle", b, "delete")
		cmd.Dir, cmd.Env = b, env
		// Best effort: the container is reported whether or not this succeeds.
		_ = cmd.Run()
		cancel()
		leaked = append(leaked, "container "+ns+"/"+id)
	}
	return leaked
}

// readTest2JSON reads the test2json stream in path into outcomes (parseTest2JSON).
func readTest2JSON(path string, outcomes map[string]Verdict) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	return parseTest2JSON(f, outcomes), nil
}

// removeDaemonDir unmounts what is mounted below daemonDir (the root file systems of the
// containers of shims killed as left behind), deepest first, and removes it.
func (c Containerd) removeDaemonDir() error {
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(c.daemonDir()))
	if err != nil {
		return err
	}
	sort.Slice(mounts, func(i, j int) bool { return len(mounts[i].Mountpoint) > len(mounts[j].Mountpoint) })
	for _, m := range mounts {
		if err := unix.Unmount(m.Mountpoint, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("unmount %s: %w", m.Mountpoint, err)
		}
	}
	return os.RemoveAll(c.daemonDir())
}

// parseTest2JSON reads test2json events from r into outcomes (top-level tests' pass, fail
// and skip) and returns the last output line seen (what a TestMain that failed printed).
func parseTest2JSON(r io.Reader, outcomes map[string]Verdict) string {
	var last string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for sc.Scan() {
		var ev struct{ Action, Test, Output string }
		if json.Unmarshal(sc.Bytes(), &ev) != nil {
			continue
		}
		if ev.Action == "output" {
			if s := strings.TrimSpace(ev.Output); s != "" {
				last = s
			}
			continue
		}
		if ev.Test == "" || strings.Contains(ev.Test, "/") {
			continue
		}
		var v Verdict
		switch ev.Action {
		case "pass":
			v = Pass
		case "fail":
			v = Fail
		case "skip":
			v = Skip
		default:
			continue
		}
		outcomes[ev.Test] = v
	}
	return last
}

// ContainerdKey is the known-failures entry of one containerd client test.
func ContainerdKey(test string) string { return "containerd:" + test }

// ContainerdKnown is the containerd entries of known, keyed by test name, for Compare.
func ContainerdKnown(known Known) Known {
	k := Known{}
	for key, reason := range known {
		if t, ok := strings.CutPrefix(key, "containerd:"); ok {
			k[t] = reason
		}
	}
	return k
}
