package cli_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/vessel-containers/vessel/internal/shimproto"
	"github.com/vessel-containers/vessel/internal/testutil"
)

// TestLifecycle walks one container through every verb, checking its state at each step,
// and checks that the stand-in pid behaves as conmon expects: it exists from create and
// exits with the container's exit status.
func TestLifecycle(t *testing.T) {
	h := newHarness(t)
	h.subreaper()
	b := h.bundle([]string{"sh", "-c", "trap 'exit 42' TERM; echo ready; i=0; while true; do i=$((i+1)); echo $i > /tmp/count; usleep 100000; done"}, nil)
	tmp := t.TempDir()
	pidFile := filepath.Join(tmp, "pid")
	outPath := filepath.Join(tmp, "out")
	out, err := os.Create(outPath)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()

	create := h.cmd("create", "--bundle", b, "--pid-file", pidFile, "c1")
	create.Stdout = out
	if _, errOut, code := h.runCmd(create); code != 0 {
		t.Fatalf("create: exit %d: %s", code, errOut)
	}
	pid := readPid(t, pidFile)
	st := h.wantState("c1", specs.StateCreated)
	if st.Pid != pid || st.Bundle != b || st.ID != "c1" || st.Version == "" {
		t.Errorf("state after create: %+v, want pid %d bundle %s", st, pid, b)
	}
	if !processExists(pid) {
		t.Errorf("stand-in %d does not exist after create", pid)
	}
	if _, errOut, code := h.run("create", "--bundle", b, "c1"); code != 1 || !strings.Contains(errOut, "exists") {
		t.Errorf("second create: exit %d %q, want 1 and \"exists\"", code, errOut)
	}

	t.Run("list", func(t *testing.T) {
		if got := h.ok("list", "-q"); got != "c1\n" {
			t.Errorf("list -q: %q", got)
		}
		var all []map[string]any
		if err := json.Unmarshal([]byte(h.ok("list", "--format", "json")), &all); err != nil || len(all) != 1 || all[0]["status"] != "created" {
			t.Errorf("list json: %v %v", all, err)
		}
		if table := h.ok("list"); !strings.Contains(table, "c1") || !strings.Contains(table, "created") {
			t.Errorf("list: %q", table)
		}
	})

	h.ok("start", "c1")
	if st := h.wantState("c1", specs.StateRunning); st.Pid != pid {
		t.Errorf("pid after start: %d, want %d", st.Pid, pid)
	}
	testutil.WaitFor(t, "the container's output", func() bool { b, _ := os.ReadFile(outPath); return strings.Contains(string(b), "ready") })
	if _, errOut, code := h.run("start", "c1"); code != 1 || !strings.Contains(errOut, "running") {
		t.Errorf("second start: exit %d %q", code, errOut)
	}

	t.Run("exec", func(t *testing.T) {
		stdout, _, code := h.run("exec", "c1", "sh", "-c", "echo exec-ok; exit 3")
		if code != 3 || stdout != "exec-ok\n" {
			t.Errorf("exec: %q exit %d, want \"exec-ok\" 3", stdout, code)
		}
		cmd := h.cmd("exec", "-e", "GREETING=hi", "--cwd", "/tmp", "c1", "sh", "-c", "echo $GREETING $(pwd); cat")
		cmd.Stdin = strings.NewReader("from stdin\n")
		if stdout, _, code := h.runCmd(cmd); code != 0 || stdout != "hi /tmp\nfrom stdin\n" {
			t.Errorf("exec with env, cwd and stdin: %q exit %d", stdout, code)
		}
		execPid := filepath.Join(t.TempDir(), "exec.pid")
		h.ok("exec", "--detach", "--pid-file", execPid, "c1", "sh", "-c", "sleep 1; exit 6")
		if code := reap(t, readPid(t, execPid)); code != 6 {
			t.Errorf("detached exec's stand-in exited %d, want 6", code)
		}
	})

	t.Run("ps", func(t *testing.T) {
		var pids []int
		if err := json.Unmarshal([]byte(h.ok("ps", "--format", "json", "c1")), &pids); err != nil || len(pids) == 0 {
			t.Errorf("ps json: %v %v", pids, err)
		}
		// As runc's ps -ef: the init shell as root, with pid, ppid, tty and command line.
		lines := strings.Split(strings.TrimSpace(h.ok("ps", "c1")), "\n")
		if len(lines) < 2 || strings.Join(strings.Fields(lines[0]), " ") != "UID PID PPID C STIME TTY TIME CMD" {
			t.Fatalf("ps: %q", lines)
		}
		f := strings.Fields(lines[1])
		if len(f) < 9 || f[0] != "root" || f[1] != strconv.Itoa(pids[0]) || f[5] != "?" || f[7] != "sh" || f[8] != "-c" {
			t.Errorf("ps: first process %q, want root's sh -c with pid %d and no tty", lines[1], pids[0])
		}
		// The BSD format's STAT: the shell sleeps between its writes, runs, or waits for a
		// write to the shared file system; it leads its session (libcontainer's setsid).
		bsd := strings.Split(strings.TrimSpace(h.ok("ps", "c1", "-e", "-x")), "\n")
		if len(bsd) < 2 || strings.Join(strings.Fields(bsd[0]), " ") != "PID TTY STAT TIME COMMAND" ||
			!strings.ContainsAny(strings.Fields(bsd[1])[2][:1], "DRS") || !strings.Contains(strings.Fields(bsd[1])[2], "s") {
			t.Errorf("ps -e -x: %q", bsd)
		}
		if _, errOut, code := h.run("ps", "c1", "-o", "pid"); code == 0 || !strings.Contains(errOut, `"-o"`) {
			t.Errorf("ps -o: exit %d %q, want the option refused by name", code, errOut)
		}
	})

	t.Run("pause resume", func(t *testing.T) {
		counter := filepath.Join(b, "rootfs", "tmp", "count")
		read := func() string { b, _ := os.ReadFile(counter); return strings.TrimSpace(string(b)) }
		first := read()
		testutil.WaitFor(t, "the counter to advance", func() bool { return read() != first })
		h.ok("pause", "c1")
		h.wantState("c1", "paused")
		if _, errOut, code := h.run("pause", "c1"); code != 1 || !strings.Contains(errOut, "not running") {
			t.Errorf("second pause: exit %d %q", code, errOut)
		}
		frozen := read()
		time.Sleep(time.Second) // observing that nothing happens needs a window
		if got := read(); got != frozen {
			t.Errorf("counter advanced while paused: %s -> %s", frozen, got)
		}
		h.ok("resume", "c1")
		h.wantState("c1", specs.StateRunning)
		testutil.WaitFor(t, "the counter to advance after resume", func() bool { return read() != frozen })
	})

	t.Run("events", func(t *testing.T) {
		var ev struct {
			Type string `json:"type"`
			ID   string `json:"id"`
			Data struct {
				CPU struct {
					Usage struct {
						Total uint64 `json:"total"`
					} `json:"usage"`
				} `json:"cpu"`
				Memory struct {
					Usage struct {
						Usage uint64 `json:"usage"`
					} `json:"usage"`
				} `json:"memory"`
				Pids struct {
					Current uint64 `json:"current"`
				} `json:"pids"`
			} `json:"data"`
		}
		line := h.ok("events", "--stats", "c1")
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("events --stats: %q: %v", line, err)
		}
		if ev.Type != "stats" || ev.ID != "c1" || ev.Data.Memory.Usage.Usage == 0 || ev.Data.CPU.Usage.Total == 0 || ev.Data.Pids.Current == 0 {
			t.Errorf("stats event: %s", line)
		}
	})

	t.Run("update", func(t *testing.T) {
		h.ok("update", "--pids-limit", "50", "c1")
		stdout, _, _ := h.run("exec", "c1", "cat", "/sys/fs/cgroup/pids.max")
		if strings.TrimSpace(stdout) != "50" {
			t.Errorf("pids.max after update: %q", stdout)
		}
	})

	// The default signal is SIGTERM; the trap exits 42, and so does the stand-in.
	h.ok("kill", "c1")
	if code := reap(t, pid); code != 42 {
		t.Errorf("stand-in exited %d, want the container's 42", code)
	}
	h.wantState("c1", specs.StateStopped)
	if _, errOut, code := h.run("kill", "c1", "KILL"); code != 1 || !strings.Contains(errOut, "not running") {
		t.Errorf("kill of a stopped container: exit %d %q", code, errOut)
	}
	h.ok("delete", "c1")
	if _, errOut, code := h.run("state", "c1"); code != 1 || !strings.Contains(errOut, "does not exist") {
		t.Errorf("state after delete: exit %d %q", code, errOut)
	}
}

// TestRunModes covers run beyond TestRunEndToEnd: a bundle of one's own (given, or the
// current directory), exit statuses of killed processes, --detach with --rm, and delete
// --force of a running container.
func TestRunModes(t *testing.T) {
	h := newHarness(t)
	b := h.bundle([]string{"sh", "-c", "echo from-bundle"}, nil)
	if stdout, _, code := h.run("run", "--bundle", b, "r1"); code != 0 || stdout != "from-bundle\n" {
		t.Errorf("run --bundle: %q exit %d", stdout, code)
	}
	// A command replaces process.args, in a copy: the bundle's config.json is untouched.
	if stdout, _, code := h.run("run", "--bundle", b, "r2", "sh", "-c", "sleep 100 & kill -9 $!; wait $!"); code != 137 || stdout != "" {
		t.Errorf("run of a process killed by SIGKILL: %q exit %d, want 137", stdout, code)
	}
	cmd := h.cmd("run", "r3")
	cmd.Dir = b
	if stdout, _, code := h.runCmd(cmd); code != 0 || stdout != "from-bundle\n" {
		t.Errorf("run in the bundle directory: %q exit %d", stdout, code)
	}

	h.ok("run", "--detach", "--rm", "--bundle", b, "r4", "sh", "-c", "sleep 1000")
	h.wantState("r4", specs.StateRunning)
	h.ok("kill", "--all", "r4", "KILL")
	testutil.WaitFor(t, "the monitor to delete r4", func() bool {
		_, errOut, code := h.run("state", "r4")
		return code == 1 && strings.Contains(errOut, "does not exist")
	})

	h.ok("run", "--detach", "--bundle", b, "r5", "sleep", "1000")
	if _, errOut, code := h.run("delete", "r5"); code != 1 || !strings.Contains(errOut, "not stopped") {
		t.Errorf("delete of a running container: exit %d %q", code, errOut)
	}
	h.ok("delete", "--force", "r5")
}

// TestConsoleSocket gives the container a terminal through --console-socket, as conmon
// does: the master arrives over the socket, the container sees a tty of the master's size
// and follows a resize, input typed on the master reaches it, and the exit status comes
// back. Detached (create + start: the monitor stands in, SIGWINCH tells it of resizes) and
// in the foreground (run: vessel stands in and polls the size).
func TestConsoleSocket(t *testing.T) {
	h := newHarness(t)
	h.subreaper()
	// The first size is read only after the test's go-ahead: `run` starts the process
	// at once, possibly before the test has set the size on the master it received. The
	// shell then waits until it sees the resize, which travels as its own request.
	b := h.bundle([]string{"sh", "-c", "tty; read go; stty size; while [ \"$(stty size)\" = '33 99' ]; do usleep 20000; done; stty size; read line; echo got:$line; exit 5"}, func(s *specs.Spec) { s.Process.Terminal = true })
	if _, _, code := h.run("create", "--bundle", b, "t0"); code != 1 {
		t.Errorf("create of a terminal container without a console socket: exit %d, want 1", code)
	}
	for _, mode := range []string{"detached", "foreground"} {
		t.Run(mode, func(t *testing.T) {
			sock := filepath.Join(t.TempDir(), "console.sock")
			masters := testutil.ListenConsole(t, sock)
			pidFile := filepath.Join(t.TempDir(), "pid")
			var fg *exec.Cmd
			if mode == "detached" {
				if _, errOut, code := h.run("create", "--bundle", b, "--console-socket", sock, "--pid-file", pidFile, "t1"); code != 0 {
					t.Fatalf("create: exit %d: %s", code, errOut)
				}
			} else {
				fg = h.cmd("run", "--bundle", b, "--console-socket", sock, "--pid-file", pidFile, "t1")
				if err := fg.Start(); err != nil {
					t.Fatal(err)
				}
			}
			var master *os.File
			select {
			case master = <-masters:
			case <-time.After(time.Minute):
				t.Fatal("no pty master on the console socket")
			}
			defer master.Close()
			setSize(t, master, 33, 99)
			if mode == "detached" {
				h.ok("start", "t1")
			}
			var out syncBuffer
			go func() {
				buf := make([]byte, 4096)
				for {
					n, err := master.Read(buf)
					_, _ = out.Write(buf[:n]) // a syncBuffer write cannot fail
					if err != nil {
						return
					}
				}
			}()
			testutil.WaitFor(t, "the tty name", func() bool { return strings.Contains(out.String(), "/dev/pts/") })
			if _, err := master.Write([]byte("go\r")); err != nil {
				t.Fatal(err)
			}
			testutil.WaitFor(t, "the first size", func() bool { return strings.Contains(out.String(), "33 99") })
			setSize(t, master, 40, 120)
			testutil.WaitFor(t, "the new size", func() bool { return strings.Contains(out.String(), "40 120") })
			if _, err := master.Write([]byte("hello\r")); err != nil {
				t.Fatal(err)
			}
			var code int
			if fg != nil {
				err := fg.Wait()
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					code = ee.ExitCode()
				}
			} else {
				code = reap(t, readPid(t, pidFile))
			}
			if code != 5 {
				t.Errorf("exit status %d, want 5", code)
			}
			testutil.WaitFor(t, "the last output", func() bool { return strings.Contains(out.String(), "got:") })
			got := out.String()
			for _, want := range []string{"/dev/pts/", "33 99", "40 120", "got:hello"} {
				if !strings.Contains(got, want) {
					t.Errorf("terminal output %q lacks %q", got, want)
				}
			}
			if mode == "detached" {
				h.ok("delete", "t1")
			}
		})
	}
}

// TestHooks runs every kind of OCI hook that runs on the host (all but startContainer,
// TestStartContainerHook) and checks the state each read on stdin, their order, and that a failing createRuntime hook fails create, destroys the
// container and still runs the poststop hooks.
func TestHooks(t *testing.T) {
	h := newHarness(t)
	h.subreaper()
	dir := t.TempDir()
	hook := filepath.Join(dir, "hook")
	// Each hook saves its stdin as <name>.json and appends its name to order.
	if err := os.WriteFile(hook, []byte("#!/bin/sh\ncat > \""+dir+"/$1.json\"\necho $1 >> \""+dir+"/order\"\nexit ${2:-0}\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	mk := func(name string, code ...string) specs.Hook {
		return specs.Hook{Path: hook, Args: append([]string{"hook", name}, code...)}
	}
	b := h.bundle([]string{"sleep", "1000"}, func(s *specs.Spec) {
		s.Hooks = &specs.Hooks{
			Prestart:        []specs.Hook{mk("prestart")}, //nolint:staticcheck // deprecated, still run
			CreateRuntime:   []specs.Hook{mk("createRuntime")},
			CreateContainer: []specs.Hook{mk("createContainer")},
			Poststart:       []specs.Hook{mk("poststart")},
			Poststop:        []specs.Hook{mk("poststop")},
		}
		s.Annotations = map[string]string{"org.example/k": "v"}
	})
	pidFile := filepath.Join(dir, "pid")
	h.ok("create", "--bundle", b, "--pid-file", pidFile, "h1")
	h.ok("start", "h1")
	h.ok("kill", "h1", "KILL")
	pid := readPid(t, pidFile)
	if code := reap(t, pid); code != 137 {
		t.Errorf("stand-in exited %d, want 137", code)
	}
	h.ok("delete", "h1")

	order, _ := os.ReadFile(filepath.Join(dir, "order"))
	if got := strings.Fields(string(order)); strings.Join(got, " ") != "prestart createRuntime createContainer poststart poststop" {
		t.Errorf("hook order: %v", got)
	}
	for name, want := range map[string]specs.ContainerState{
		"prestart": specs.StateCreating, "createRuntime": specs.StateCreating, "createContainer": specs.StateCreating,
		"poststart": specs.StateRunning, "poststop": specs.StateStopped,
	} {
		data, err := os.ReadFile(filepath.Join(dir, name+".json"))
		if err != nil {
			t.Errorf("%s hook did not run: %v", name, err)
			continue
		}
		var st specs.State
		if err := json.Unmarshal(data, &st); err != nil {
			t.Errorf("%s hook read %q: %v", name, data, err)
			continue
		}
		wantPid := pid
		if want == specs.StateStopped {
			wantPid = 0
		}
		if st.Status != want || st.ID != "h1" || st.Bundle != b || st.Pid != wantPid || st.Annotations["org.example/k"] != "v" || st.Version == "" {
			t.Errorf("%s hook state %+v: want status %s pid %d", name, st, want, wantPid)
		}
	}

	// A failing createRuntime hook: create fails, the container is gone, poststop ran.
	os.Remove(filepath.Join(dir, "order"))
	bad := h.bundle([]string{"sleep", "1000"}, func(s *specs.Spec) {
		s.Hooks = &specs.Hooks{CreateRuntime: []specs.Hook{mk("createRuntime", "3")}, Poststop: []specs.Hook{mk("poststop")}}
	})
	_, errOut, code := h.run("create", "--bundle", bad, "h2")
	if code != 1 || !strings.Contains(errOut, "createRuntime hook") {
		t.Errorf("create with a failing hook: exit %d %q", code, errOut)
	}
	if _, errOut, code := h.run("state", "h2"); code != 1 || !strings.Contains(errOut, "does not exist") {
		t.Errorf("state after failed create: exit %d %q", code, errOut)
	}
	if order, _ := os.ReadFile(filepath.Join(dir, "order")); strings.Join(strings.Fields(string(order)), " ") != "createRuntime poststop" {
		t.Errorf("hooks after a failed createRuntime: %q", order)
	}
}

// TestDeadShim kills the shim under a running container: the container reads as stopped
// and delete (without --force) removes the VM, mounts, sockets and state it left.
func TestDeadShim(t *testing.T) {
	h := newHarness(t)
	b := h.bundle([]string{"sleep", "1000"}, nil)
	h.ok("run", "--detach", "--bundle", b, "d1")
	out, err := exec.Command("pgrep", "-f", shimproto.BinaryName+" .*-"+shimproto.FlagSandboxRoot+" "+h.root+"/").Output()
	if err != nil {
		t.Fatalf("no shim found: %v", err)
	}
	var shimPid int
	for _, f := range strings.Fields(string(out)) {
		shimPid = atoi(t, f)
	}
	if err := syscall.Kill(shimPid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "the container to read as stopped", func() bool { return h.state("d1").Status == specs.StateStopped })
	h.ok("delete", "d1")
	// Cleanup asserts that no QEMU, mount, socket or state is left.
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	var n int
	for _, c := range s {
		if c < '0' || c > '9' {
			t.Fatalf("not a number: %q", s)
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// TestKillCreated: a container that was created but never started, then killed, stops: its
// exit is reported (the stand-in exits, state says stopped) and delete needs no --force.
func TestKillCreated(t *testing.T) {
	h := newHarness(t)
	h.subreaper()
	b := h.bundle([]string{"sleep", "1000"}, nil)
	pidFile := filepath.Join(t.TempDir(), "pid")
	h.ok("create", "--bundle", b, "--pid-file", pidFile, "never-started")
	pid := readPid(t, pidFile)
	h.wantState("never-started", specs.StateCreated)
	h.ok("kill", "never-started", "KILL")
	testutil.WaitFor(t, "the killed container to stop", func() bool {
		return h.state("never-started").Status == specs.StateStopped
	})
	// The stand-in exits with the process's status, as for any killed container.
	if code := reap(t, pid); code != 128+int(syscall.SIGKILL) {
		t.Errorf("stand-in exit status %d, want %d", code, 128+int(syscall.SIGKILL))
	}
	h.ok("delete", "never-started")
	h.assertNoLeftovers()
}

// TestKillThenDelete: once kill ended the container's process, delete finds the container
// stopped without waiting for anything else (as runc does once the process is gone); a
// kill of a container deleted underneath (its shim gone) is "not running".
func TestKillThenDelete(t *testing.T) {
	h := newHarness(t)
	h.subreaper()
	b := h.bundle([]string{"sh", "-c", "echo started; exec sleep 1000"}, nil)
	pidFile := filepath.Join(t.TempDir(), "pid")
	h.ok("run", "--detach", "--bundle", b, "--pid-file", pidFile, "k1")
	pid := readPid(t, pidFile)
	h.ok("kill", "k1", "KILL")
	start := time.Now()
	testutil.WaitFor(t, "the killed container to be stopped", func() bool { return h.state("k1").Status == specs.StateStopped })
	t.Logf("stopped %v after kill", time.Since(start))
	if code := reap(t, pid); code != 128+int(syscall.SIGKILL) {
		t.Errorf("stand-in exit status %d, want %d", code, 128+int(syscall.SIGKILL))
	}
	h.ok("delete", "k1")
	if _, errOut, code := h.run("kill", "k1", "KILL"); code != 1 || !strings.Contains(errOut, "does not exist") {
		t.Errorf("kill of a deleted container: exit %d %q", code, errOut)
	}
	h.assertNoLeftovers()
}

// TestExecAndKillLikeRunc: exec into a created container works, an exec that cannot run
// exits 255, kill takes signal 0 (a check) and --all, as with runc.
func TestExecAndKillLikeRunc(t *testing.T) {
	h := newHarness(t)
	h.subreaper()
	b := h.bundle([]string{"sleep", "1000"}, nil)
	pidFile := filepath.Join(t.TempDir(), "pid")
	h.ok("create", "--bundle", b, "--pid-file", pidFile, "e1")
	pid := readPid(t, pidFile)
	if out, errOut, code := h.run("exec", "e1", "echo", "in-created"); code != 0 || out != "in-created\n" {
		t.Errorf("exec into a created container: %q exit %d: %s", out, code, errOut)
	}
	h.wantState("e1", specs.StateCreated)
	if _, errOut, code := h.run("exec", "e1", "/nonexistent"); code != 255 || !strings.Contains(errOut, "exec failed") {
		t.Errorf("exec of a missing binary: exit %d %q, want 255 and \"exec failed\"", code, errOut)
	}
	h.ok("kill", "e1", "0")
	h.ok("start", "e1")
	h.ok("kill", "e1", "0")
	// A terminal process with vessel's stdin not a terminal (here /dev/null): its terminal
	// is relayed to vessel's stdio.
	if out, errOut, code := h.run("exec", "--tty", "e1", "echo", "on-a-tty"); code != 0 || out != "on-a-tty\r\n" {
		t.Errorf("exec --tty with stdin not a terminal: %q exit %d: %s", out, code, errOut)
	}
	h.ok("kill", "--all", "e1", "KILL")
	if code := reap(t, pid); code != 128+int(syscall.SIGKILL) {
		t.Errorf("stand-in exit status %d, want %d", code, 128+int(syscall.SIGKILL))
	}
	if _, errOut, code := h.run("kill", "e1", "0"); code != 1 || !strings.Contains(errOut, "not running") {
		t.Errorf("kill 0 of a stopped container: exit %d %q", code, errOut)
	}
	// With --all there is no process left to signal: success, as with runc.
	h.ok("kill", "--all", "e1", "0")
	h.ok("delete", "e1")
	h.assertNoLeftovers()
}

// TestDeleteForceSubCgroups: delete --force removes a running container whose processes
// live in cgroups it made below its own, as runc's does.
func TestDeleteForceSubCgroups(t *testing.T) {
	h := newHarness(t)
	h.subreaper()
	b := h.bundle([]string{"sleep", "1000"}, func(s *specs.Spec) {
		for i, m := range s.Mounts {
			if m.Type == "cgroup" || m.Type == "cgroup2" {
				var opts []string
				for _, o := range m.Options {
					if o != "ro" {
						opts = append(opts, o)
					}
				}
				s.Mounts[i].Options = append(opts, "rw")
			}
		}
	})
	pidFile := filepath.Join(t.TempDir(), "pid")
	h.ok("run", "--detach", "--bundle", b, "--pid-file", pidFile, "sub")
	pid := readPid(t, pidFile)
	// As runc's test does: a threaded sub-cgroup holding a thread of a process the exec
	// leaves behind.
	nest := "set -e; sleep 3000 >/dev/null 2>&1 & p=$!; cd /sys/fs/cgroup; echo +pids > cgroup.subtree_control; mkdir foo; " +
		"echo threaded > foo/cgroup.type; echo $p > foo/cgroup.threads; echo $p; cat foo/cgroup.threads"
	if out, errOut, code := h.run("exec", "sub", "sh", "-c", nest); code != 0 || len(strings.Fields(out)) < 2 {
		t.Fatalf("make a sub-cgroup with a process in it: %q exit %d: %s", out, code, errOut)
	}
	h.ok("delete", "--force", "sub")
	if _, errOut, code := h.run("state", "sub"); code != 1 || !strings.Contains(errOut, "does not exist") {
		t.Errorf("state after delete --force: exit %d %q", code, errOut)
	}
	reap(t, pid)
	h.assertNoLeftovers()
}

// TestEventsOOM: `vessel events` reports the guest kernel's OOM kill in the container
// within seconds, although stats events come only every --interval (an hour here), as
// runc's events does. The hog fills the container's /dev/shm tmpfs, whose pages are
// charged to the container's 32 MiB memory cgroup in the guest.
func TestEventsOOM(t *testing.T) {
	h := newHarness(t)
	h.subreaper()
	limit := int64(32 << 20)
	b := h.bundle([]string{"sleep", "1000"}, func(s *specs.Spec) {
		s.Linux.Resources.Memory = &specs.LinuxMemory{Limit: &limit, Swap: &limit}
	})
	_, remove := h.created(b, "oom1")
	h.ok("start", "oom1")
	events := h.cmd("events", "--interval", "1h", "oom1")
	stdout, err := events.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := events.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	next := func(what string) string {
		t.Helper()
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("events ended before %s", what)
			}
			return l
		case <-time.After(2 * time.Minute):
			t.Fatalf("no event line for %s in 2 minutes", what)
		}
		return ""
	}
	if l := next("the first stats event"); !strings.HasPrefix(l, `{"type":"stats","id":"oom1"`) {
		t.Fatalf("first event: %q", l)
	}
	h.ok("exec", "--detach", "oom1", "dd", "if=/dev/zero", "of=/dev/shm/fill", "bs=1M", "count=60")
	if l := next("the OOM event"); l != `{"type":"oom","id":"oom1"}` {
		t.Errorf("event after the OOM: %q, want the oom event", l)
	}
	remove()
	// With the container gone, events ends by itself.
	for range lines {
	}
	if err := events.Wait(); err != nil {
		t.Errorf("events after delete: %v", err)
	}
	h.assertNoLeftovers()
}

// TestDefaultHostCgroup: a spec without linux.cgroupsPath gets a host cgroup named after
// the container, as with runc, holding the VM; delete removes it.
func TestDefaultHostCgroup(t *testing.T) {
	h := newHarness(t)
	h.subreaper()
	b := h.bundle([]string{"sleep", "1000"}, func(s *specs.Spec) { s.Linux.CgroupsPath = "" })
	_, remove := h.created(b, "cgdefault1")
	procs := "/sys/fs/cgroup/memory/cgdefault1/cgroup.procs"
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		procs = "/sys/fs/cgroup/cgdefault1/cgroup.procs"
	}
	data, err := os.ReadFile(procs)
	if err != nil || len(strings.Fields(string(data))) == 0 {
		t.Errorf("host cgroup %s of a spec without cgroupsPath: %q, %v; want the VM's processes", procs, data, err)
	}
	remove()
	if _, err := os.Stat(filepath.Dir(procs)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("host cgroup %s after delete: %v, want it removed", filepath.Dir(procs), err)
	}
	h.assertNoLeftovers()
}

// TestCgroupNotEmptyWarning: a container whose linux.cgroupsPath names a host cgroup that
// already holds another container's VM is created with runc's warning on stderr; the
// first, into an empty cgroup, gets none.
func TestCgroupNotEmptyWarning(t *testing.T) {
	h := newHarness(t)
	h.subreaper()
	cg := "/vessel-test-cgnotempty-" + strconv.Itoa(os.Getpid())
	b := h.bundle([]string{"sleep", "1000"}, func(s *specs.Spec) { s.Linux.CgroupsPath = cg })
	const warning = "container's cgroup is not empty"
	for i, id := range []string{"cgne1", "cgne2"} {
		pidFile := filepath.Join(t.TempDir(), "pid")
		// Without --log, so that the warning goes to stderr as in runc's test.
		_, stderr, code := h.runCmd(exec.Command(h.bin, "--root", h.root, "--config", h.cfg, "create", "--bundle", b, "--pid-file", pidFile, id))
		if code != 0 {
			t.Fatalf("create %s: exit %d: %s", id, code, stderr)
		}
		pid := readPid(t, pidFile)
		t.Cleanup(func() {
			h.ok("delete", "--force", id)
			reap(t, pid)
		})
		if got, want := strings.Contains(stderr, warning), i > 0; got != want {
			t.Errorf("create %s: stderr %q: warning %q present %v, want %v", id, stderr, warning, got, want)
		}
	}
}
