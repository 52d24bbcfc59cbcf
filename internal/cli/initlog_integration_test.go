package cli_test

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/vessel-containers/vessel/internal/testutil"
)

// The lines of libcontainer's container setup in the guest that runc's debug.bats and
// exec.bats look for: nsexec's, "runc init"'s (standard init for a container, setns init
// for an exec).
var (
	createSetupLines = []string{"nsexec container setup", "child process in init()", "init: closing the pipe to signal completion"}
	execSetupLines   = []string{"nsexec container setup", "child process in init()", "setns_init: about to exec"}
)

// TestDebugRelaysGuestSetupLog: with --debug, vessel shows what the guest's libcontainer
// logged while it set the container and an exec up, in the --log file and format asked
// (stderr, text, by default), as runc shows its own "runc init" and nsexec lines; without
// --debug there are none.
func TestDebugRelaysGuestSetupLog(t *testing.T) {
	h := newHarness(t)
	h.subreaper()
	// global runs vessel with the harness's root and configuration but the logging flags
	// given, not the harness's.
	global := func(args ...string) *exec.Cmd {
		return exec.Command(h.bin, append([]string{"--root", h.root, "--config", h.cfg}, args...)...)
	}
	b := h.bundle([]string{"echo", "hello"}, nil)

	t.Run("stderr text", func(t *testing.T) {
		out, errOut, code := h.runCmd(global("--debug", "run", "--bundle", b, "d1"))
		if code != 0 || out != "hello\n" {
			t.Fatalf("--debug run: %q exit %d: %s", out, code, errOut)
		}
		for _, want := range append([]string{"level=debug", "source=guest"}, createSetupLines...) {
			if !strings.Contains(errOut, want) {
				t.Errorf("--debug run: stderr lacks %q:\n%s", want, errOut)
			}
		}
		// nsexec names its stage and the guest pid, as it does under runc.
		if !strings.Contains(errOut, `msg="nsexec-`) {
			t.Errorf("--debug run: no nsexec stage line:\n%s", errOut)
		}
	})

	t.Run("log file json", func(t *testing.T) {
		logFile := filepath.Join(t.TempDir(), "log.json")
		out, errOut, code := h.runCmd(global("--log", logFile, "--log-format", "json", "--debug", "run", "--bundle", b, "d2"))
		if code != 0 || out != "hello\n" || strings.Contains(errOut, "debug") {
			t.Fatalf("--debug --log run: %q exit %d, stderr (want no debug lines there): %s", out, code, errOut)
		}
		f, err := os.Open(logFile)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		found := map[string]bool{}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var e struct {
				Level, Msg, Source, Time string
			}
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Fatalf("log line %q is not JSON: %v", sc.Text(), err)
			}
			if e.Source != "guest" {
				continue
			}
			if e.Level == "" || e.Time == "" {
				t.Errorf("guest line without level or time: %s", sc.Text())
			}
			for _, want := range createSetupLines {
				if e.Level == "debug" && strings.Contains(e.Msg, want) {
					found[want] = true
				}
			}
		}
		for _, want := range createSetupLines {
			if !found[want] {
				t.Errorf("log file lacks a debug guest line with %q", want)
			}
		}
	})

	t.Run("exec", func(t *testing.T) {
		sleeper := h.bundle([]string{"sleep", "1000"}, nil)
		_, remove := h.created(sleeper, "d3")
		h.ok("start", "d3")
		out, errOut, code := h.runCmd(global("--debug", "exec", "d3", "echo", "in-exec"))
		if code != 0 || out != "in-exec\n" {
			t.Fatalf("--debug exec: %q exit %d: %s", out, code, errOut)
		}
		for _, want := range append([]string{"level=debug", "source=guest"}, execSetupLines...) {
			if !strings.Contains(errOut, want) {
				t.Errorf("--debug exec: stderr lacks %q:\n%s", want, errOut)
			}
		}
		// Without --debug, nothing of the guest's setup shows.
		out, errOut, code = h.runCmd(global("exec", "d3", "echo", "quiet"))
		if code != 0 || out != "quiet\n" || strings.Contains(errOut, "source=guest") || strings.Contains(errOut, "nsexec") {
			t.Errorf("exec without --debug: %q exit %d, stderr %q (want no guest lines)", out, code, errOut)
		}
		remove()
	})
}

// TestExecIgnorePaused: exec --ignore-paused into a paused container waits for the resume
// and then returns with the process's output, as runc's does; without the flag the exec is
// refused.
func TestExecIgnorePaused(t *testing.T) {
	h := newHarness(t)
	h.subreaper()
	b := h.bundle([]string{"sleep", "1000"}, nil)
	_, remove := h.created(b, "p1")
	h.ok("start", "p1")
	h.ok("pause", "p1")
	h.wantState("p1", "paused")
	if _, errOut, code := h.run("exec", "p1", "echo", "no"); code == 0 || !strings.Contains(errOut, "paused") {
		t.Errorf("exec into a paused container: exit %d %q, want it refused", code, errOut)
	}

	dir := t.TempDir()
	stdout, err := os.Create(filepath.Join(dir, "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	defer stdout.Close()
	stderr, err := os.Create(filepath.Join(dir, "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	cmd := h.cmd("exec", "--ignore-paused", "p1", "echo", "ok")
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var waitErr error
	exited := make(chan struct{})
	go func() { // owner: the test; ends when the exec exits, which the cleanup forces
		waitErr = cmd.Wait()
		close(exited)
	}()
	// Runs before remove (registered after it): an exec still waiting is killed and reaped.
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	// The guest's agent says when the exec waits for the resume; the exec must not
	// return meanwhile.
	console := filepath.Join(h.root, "sandboxes", "p1", "console.log")
	testutil.WaitFor(t, "the exec to wait for the resume", func() bool {
		select {
		case <-exited:
			errOut, _ := os.ReadFile(stderr.Name())
			t.Fatalf("exec --ignore-paused returned while the container is paused: %v: %s", waitErr, errOut)
		default:
		}
		data, _ := os.ReadFile(console)
		return strings.Contains(string(data), "exec waits for the container to be resumed")
	})
	h.wantState("p1", "paused")
	h.ok("resume", "p1")
	<-exited
	if waitErr != nil {
		errOut, _ := os.ReadFile(stderr.Name())
		t.Fatalf("exec --ignore-paused: %v: %s", waitErr, errOut)
	}
	if out, _ := os.ReadFile(stdout.Name()); string(out) != "ok\n" {
		t.Errorf("exec --ignore-paused: output %q, want \"ok\\n\"", out)
	}
	h.wantState("p1", specs.StateRunning)
	// On a container that is not paused the flag changes nothing.
	if out := h.ok("exec", "--ignore-paused", "p1", "echo", "running"); out != "running\n" {
		t.Errorf("exec --ignore-paused into a running container: %q", out)
	}
	remove()
}
