package cli_test

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/console"

	"github.com/vessel-containers/vessel/internal/testutil"
)

// debugConfig enables the debug console; the guest image must have a shell (built with
// `vessel image build --debug-console`).
const debugConfig = "\n[agent]\ndebug_console_enabled = true\n"

// createSandbox creates (not starts) a container, which boots its sandbox, and returns a
// function that deletes it and reaps its stand-in.
func (h *harness) createSandbox(id string) func() {
	h.t.Helper()
	b := h.bundle([]string{"sleep", "1000"}, nil)
	pidFile := filepath.Join(h.t.TempDir(), "pid")
	h.ok("create", "--bundle", b, "--pid-file", pidFile, id)
	pid := readPid(h.t, pidFile)
	return func() {
		h.ok("delete", "--force", id)
		reap(h.t, pid)
	}
}

// TestDebugConsole drives `vessel debug console` through a pty: a shell in the guest (not in
// a container: it sees the guest's hostname and the agent as PID 1) that follows the
// terminal's size, and exits with the shell's status. `vessel debug exec` runs one command.
func TestDebugConsole(t *testing.T) {
	h := newHarnessConfig(t, debugConfig)
	h.subreaper()
	defer h.createSandbox("dbg1")()

	t.Run("exec", func(t *testing.T) {
		out, errOut, code := h.run("debug", "exec", "dbg1", "--", "sh", "-c", "echo host=$(hostname) init=$(cat /proc/1/comm); echo oops >&2; exit 4")
		if code != 4 {
			t.Fatalf("debug exec: exit %d, want 4 (stderr %q)", code, errOut)
		}
		if out != "host=dbg1 init=init\n" {
			t.Errorf("debug exec stdout: %q", out)
		}
		if !strings.Contains(errOut, "oops") {
			t.Errorf("debug exec stderr: %q", errOut)
		}
	})

	t.Run("console", func(t *testing.T) {
		pty, slave, err := console.NewPty()
		if err != nil {
			t.Fatal(err)
		}
		defer pty.Close()
		if err := pty.Resize(console.WinSize{Height: 33, Width: 99}); err != nil {
			t.Fatal(err)
		}
		tty, err := os.OpenFile(slave, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer tty.Close()
		cmd := h.cmd("debug", "console", "dbg1")
		cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		tty.Close()
		var out syncBuffer
		copied := make(chan struct{})
		go func() {
			defer close(copied)
			_, _ = io.Copy(&out, pty) // ends with EIO once vessel and the pty's users are gone
		}()
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		write := func(s string) {
			t.Helper()
			if _, err := pty.Write([]byte(s)); err != nil {
				t.Fatal(err)
			}
		}
		write("echo sum=$((6*7)) tty=$(tty)\n")
		testutil.WaitFor(t, "the shell's answer", func() bool { return strings.Contains(out.String(), "sum=42 tty=/dev/pts/") })
		write("stty size\n")
		testutil.WaitFor(t, "the first size", func() bool { return strings.Contains(out.String(), "33 99") })
		if err := pty.Resize(console.WinSize{Height: 51, Width: 133}); err != nil {
			t.Fatal(err)
		}
		// The resize reaches the guest when vessel handled its SIGWINCH: ask until it shows.
		testutil.WaitFor(t, "the new size", func() bool {
			if strings.Contains(out.String(), "51 133") {
				return true
			}
			write("stty size\n")
			return false
		})
		write("exit 3\n")
		select {
		case err := <-exited:
			var code int
			if ee, ok := err.(interface{ ExitCode() int }); ok {
				code = ee.ExitCode()
			}
			if code != 3 {
				t.Errorf("debug console: %v, want exit status 3; terminal:\n%s", err, out.String())
			}
		case <-time.After(time.Minute):
			_ = cmd.Process.Kill()
			<-exited
			t.Fatalf("debug console did not exit; terminal:\n%s", out.String())
		}
		pty.Close()
		<-copied
	})
}

// TestDebugConsoleDisabled checks that a sandbox created without
// agent.debug_console_enabled refuses the debug verbs, naming the key.
func TestDebugConsoleDisabled(t *testing.T) {
	h := newHarness(t)
	h.subreaper()
	defer h.createSandbox("nodbg")()
	for _, args := range [][]string{{"debug", "exec", "nodbg", "--", "true"}, {"debug", "console", "nodbg"}} {
		_, errOut, code := h.run(args...)
		if code == 0 || !strings.Contains(errOut, "agent.debug_console_enabled") {
			t.Errorf("vessel %s: exit %d, stderr %q; want a refusal naming agent.debug_console_enabled", strings.Join(args, " "), code, errOut)
		}
	}
	if _, err := os.Stat(filepath.Join(h.root, "sandboxes", "nodbg", "debug.sock")); !os.IsNotExist(err) {
		t.Errorf("debug.sock of a sandbox without the debug console: %v, want none", err)
	}
}
