package cli_test

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/console"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/vessel-containers/vessel/internal/persist"
	"github.com/vessel-containers/vessel/internal/testutil"
)

// debugConfig enables the debug console.
const debugConfig = "\n[agent]\ndebug_console_enabled = true\n"

// newDebugHarness is a harness with the debug console enabled and a guest with a shell.
func newDebugHarness(t *testing.T) *harness {
	t.Helper()
	return newHarnessGuest(t, testutil.RequiresDebugGuest(t), debugConfig)
}

// createSandbox creates (not starts) a container, which boots its sandbox with the
// hostname guest-ID, and returns a function that deletes it and reaps its stand-in.
func (h *harness) createSandbox(id string) func() {
	h.t.Helper()
	b := h.bundle([]string{"sleep", "1000"}, func(s *specs.Spec) { s.Hostname = "guest-" + id })
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
	h := newDebugHarness(t)
	h.subreaper()
	defer h.createSandbox("dbg1")()

	t.Run("exec", func(t *testing.T) {
		out, errOut, code := h.run("debug", "exec", "dbg1", "--", "sh", "-c", "echo host=$(hostname) init=$(cat /proc/1/comm); echo oops >&2; exit 4")
		if code != 4 {
			t.Fatalf("debug exec: exit %d, want 4 (stderr %q)", code, errOut)
		}
		if out != "host=guest-dbg1 init=init\n" {
			t.Errorf("debug exec stdout: %q", out)
		}
		if !strings.Contains(errOut, "oops") {
			t.Errorf("debug exec stderr: %q", errOut)
		}
	})

	// `vessel sandbox ls|inspect` read the live sandbox's state.
	t.Run("sandbox verbs", func(t *testing.T) {
		ls := h.ok("sandbox", "ls")
		t.Logf("vessel sandbox ls:\n%s", ls)
		lines := strings.Split(strings.TrimSpace(ls), "\n")
		if len(lines) != 2 || !strings.HasPrefix(lines[1], "dbg1 ") || !strings.Contains(lines[1], "running") || strings.Contains(lines[1], "gone") {
			t.Errorf("sandbox ls: %q, want dbg1 running with its VM", ls)
		}
		var info struct {
			ID         string `json:"id"`
			VMRunning  bool   `json:"vm_running"`
			VMRSS      uint64 `json:"vm_rss_bytes"`
			VCPUs      uint32 `json:"vcpus"`
			MemoryMiB  uint32 `json:"memory_mib"`
			Debug      string `json:"debug_socket"`
			HostMounts []string
			Containers map[string]struct {
				Mounts []struct {
					Destination string `json:"destination"`
				} `json:"mounts"`
			} `json:"containers"`
		}
		out := h.ok("sandbox", "inspect", "dbg1")
		if err := json.Unmarshal([]byte(out), &info); err != nil {
			t.Fatalf("sandbox inspect: %v\n%s", err, out)
		}
		if info.ID != "dbg1" || !info.VMRunning || info.VMRSS < 16<<20 || info.VCPUs == 0 || info.MemoryMiB == 0 || info.Debug == "" {
			t.Errorf("sandbox inspect: %+v", info)
		}
		if c, ok := info.Containers["dbg1"]; !ok || len(c.Mounts) == 0 || c.Mounts[0].Destination != "/proc" {
			t.Errorf("sandbox inspect: container dbg1 and its mounts missing:\n%s", out)
		}
	})

	// A debug process whose vessel is killed is killed in the guest too.
	t.Run("client killed", func(t *testing.T) {
		cmd := h.cmd("debug", "exec", "dbg1", "--", "sleep", "4242")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sleeping := func() string {
			out, errOut, code := h.run("debug", "exec", "dbg1", "--", "sh", "-c", "ps -o pid,args | grep '[s]leep 4242' || echo none")
			if code != 0 {
				t.Fatalf("debug exec ps: exit %d: %s", code, errOut)
			}
			return strings.TrimSpace(out)
		}
		testutil.WaitFor(t, "the guest's sleep", func() bool { s := sleeping(); return s != "" && s != "none" })
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait() // killed: its status is known
		testutil.WaitFor(t, "the guest's sleep to be killed", func() bool { return sleeping() == "none" })
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
			t.Logf("debug console killed: %v", <-exited)
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

// TestGuestCrashReported crashes guests through the debug console and checks that the
// sandbox's error (its persisted state) and the shim's log tell what happened, with the
// last kernel lines: the agent (PID 1) killed by SIGABRT, which panics the kernel, and a
// kernel panic of its own (out of memory with vm.panic_on_oom set).
func TestGuestCrashReported(t *testing.T) {
	h := newDebugHarness(t)
	h.subreaper()
	for _, tc := range []struct {
		name, script string
		want         []string
	}{
		{"agent", "kill -ABRT 1", []string{
			"guest crashed: the agent (PID 1) crashed (SIGABRT: abort), which panicked the guest kernel: Attempted to kill init!",
			"--- guest kernel (last", "Kernel panic - not syncing: Attempted to kill init!",
		}},
		{"kernel", "echo 1 > /proc/sys/vm/panic_on_oom && mkdir -p /tmp/fill && mount -t tmpfs -o size=4g fill /tmp/fill && cat /dev/zero > /tmp/fill/zero", []string{
			"guest crashed: guest kernel panic: Out of memory", "panic_on_oom",
			"--- guest kernel (last", "Kernel panic - not syncing: Out of memory",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := "crash-" + tc.name
			deleteSandbox := h.createSandbox(id)
			defer deleteSandbox()
			// The guest dies under the command: its own exit status is of no interest.
			h.run("debug", "exec", id, "--", "sh", "-c", tc.script)
			dir := filepath.Join(h.root, "sandboxes", id)
			var st *persist.Sandbox
			testutil.WaitFor(t, "the sandbox's error", func() bool {
				var err error
				st, err = persist.Load(dir)
				return err == nil && st.Error != ""
			})
			head, _, _ := strings.Cut(st.Error, "\n--- guest console")
			t.Logf("sandbox error (up to the console tail):\n%s", head)
			if st.State != "stopped" {
				t.Errorf("state after the crash: %q, want stopped", st.State)
			}
			for _, want := range tc.want {
				if !strings.Contains(st.Error, want) {
					t.Errorf("sandbox error lacks %q:\n%s", want, st.Error)
				}
			}
			shimLog, err := os.ReadFile(filepath.Join(h.root, "containers", id, "shim.log"))
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{"level=error", "sandbox failed: the guest crashed", "Kernel panic - not syncing"} {
				if !strings.Contains(string(shimLog), want) {
					t.Errorf("shim log lacks %q", want)
				}
			}
		})
	}
}
