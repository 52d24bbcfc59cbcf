package shim_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/console"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vessel-containers/vessel/internal/monitor"
	"github.com/vessel-containers/vessel/internal/sharefs"
	"github.com/vessel-containers/vessel/internal/shimclient"
	"github.com/vessel-containers/vessel/internal/shimproto"
	"github.com/vessel-containers/vessel/internal/taskpid"
	"github.com/vessel-containers/vessel/internal/testutil"
)

const runtimeName = "io.containerd.vessel.v2"

// harness is a containerd daemon with Vessel's shim on its PATH and the busybox image.
type harness struct {
	t      *testing.T
	ctd    *testutil.Containerd
	sbRoot string
	// binDir holds the shim binary the harness built; its task stand-ins run it too.
	binDir string
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	return newHarnessConfig(t, "")
}

// newHarnessConfig is newHarness with extra configuration.toml text.
func newHarnessConfig(t *testing.T, extra string) *harness {
	t.Helper()
	return newHarnessGuest(t, testutil.RequiresVM(t), extra)
}

// newHarnessGuest is newHarnessConfig booting guest g.
func newHarnessGuest(t *testing.T, g testutil.Guest, extra string) *harness {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "configuration.toml")
	if err := os.WriteFile(cfg, g.Config(extra), 0o644); err != nil {
		t.Fatal(err)
	}
	sbRoot, err := os.MkdirTemp("", "vsb")
	if err != nil {
		t.Fatal(err)
	}
	binDir := testutil.BuildShim(t, shimproto.Options{SandboxRoot: sbRoot})
	ctd := testutil.StartContainerd(t, binDir, "VESSEL_CONFIG="+cfg)
	h := &harness{t: t, ctd: ctd, sbRoot: sbRoot, binDir: binDir}
	t.Cleanup(func() {
		h.assertNoLeftovers()
		os.RemoveAll(sbRoot)
	})
	if _, err := ctd.Ctr(context.Background(), "image", "import", "--all-platforms", testutil.BuildBusyboxImage(t)); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *harness) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 3*time.Minute)
}

// run runs `ctr run --rm` and returns output and exit code.
func (h *harness) run(id string, args ...string) (string, int) {
	h.t.Helper()
	return h.runFlags(nil, id, args...)
}

// runFlags is run with extra `ctr run` flags.
func (h *harness) runFlags(flags []string, id string, args ...string) (string, int) {
	h.t.Helper()
	ctx, cancel := h.ctx()
	defer cancel()
	full := append(append([]string{"run", "--rm", "--runtime", runtimeName}, flags...), testutil.BusyboxImageRef, id)
	cmd := h.ctd.CtrCmd(ctx, append(full, args...)...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok { //nolint:errorlint // exec errors are not wrapped
		code = ee.ExitCode()
	} else if err != nil {
		h.t.Fatalf("ctr run: %v", err)
	}
	return string(out), code
}

// TestUpdateGrowsVM: with static_sandbox_resource_mgmt off, a task update that raises a
// container's limits hot-plugs the vCPUs and memory the sizing formula asks for, seen from
// inside the container.
func TestUpdateGrowsVM(t *testing.T) {
	h := newHarnessConfig(t, "[runtime]\nstatic_sandbox_resource_mgmt = false\n")
	events := h.ctd.Events(t)
	h.start("box", nil, "sleep", "1000")
	waitEvent(t, events, "/tasks/start", `"box"`)
	size := func(execID string) (string, int) {
		f := strings.Fields(h.ctr("task", "exec", "--exec-id", execID, "box", "sh", "-c", "nproc; grep MemTotal /proc/meminfo"))
		if len(f) < 3 {
			t.Fatalf("nproc and MemTotal: %q", f)
		}
		kib, err := strconv.Atoi(f[2])
		if err != nil {
			t.Fatalf("MemTotal %q: %v", f[2], err)
		}
		return f[0], kib >> 10
	}
	cpus0, mem0 := size("before")
	// One CPU of quota and 512 MiB add a vCPU and 512 MiB to the default size
	// (static_sandbox_resource_mgmt is off). This ctr has no `task update`: the test
	// sends the Update containerd sends for it (and for CRI's UpdateContainerResources).
	quota, period, limit := int64(100000), uint64(100000), int64(512<<20)
	h.updateTask("box", &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: &quota, Period: &period}, Memory: &specs.LinuxMemory{Limit: &limit}})
	cpus1, mem1 := size("after")
	if cpus0 != "1" || cpus1 != "2" {
		t.Errorf("vCPUs %s before and %s after the update, want 1 and 2", cpus0, cpus1)
	}
	if d := mem1 - mem0; d < 504 || d > 520 {
		t.Errorf("MemTotal grew by %d MiB (%d -> %d), want 512", d, mem0, mem1)
	}
}

// TestAgentPolicyDeniesExec: with the strict example policy (agent.policy_file), the
// guest refuses `ctr task exec` with PermissionDenied, and the container keeps running.
func TestAgentPolicyDeniesExec(t *testing.T) {
	strict := filepath.Join(testutil.RepoRoot(t), "internal", "agent", "policy", "examples", "strict.toml")
	h := newHarnessConfig(t, fmt.Sprintf("[agent]\npolicy_file = %q\n", strict))
	events := h.ctd.Events(t)
	h.start("box", nil, "sleep", "1000")
	waitEvent(t, events, "/tasks/start", `"box"`)
	ctx, cancel := h.ctx()
	defer cancel()
	out, err := h.ctd.CtrCmd(ctx, "task", "exec", "--exec-id", "e1", "box", "true").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "ExecProcess is denied by the agent policy") {
		t.Fatalf("exec under the strict policy: %v: %s", err, out)
	}
	if st := h.taskStatus("box"); st != "RUNNING" {
		t.Fatalf("the container is %s after a denied exec, want RUNNING", st)
	}
}

// updateTask sends the task's shim the Update request containerd sends for a resource
// update.
func (h *harness) updateTask(id string, res *specs.LinuxResources) {
	h.t.Helper()
	ctx, cancel := h.ctx()
	defer cancel()
	c := h.dialShim(ctx, id)
	defer c.Close()
	anyRes, err := typeurl.MarshalAnyToProto(res)
	if err != nil {
		h.t.Fatal(err)
	}
	if _, err := c.Update(ctx, &taskAPI.UpdateTaskRequest{ID: id, Resources: anyRes}); err != nil {
		h.t.Fatalf("update %s: %v", id, err)
	}
}

// dialShim connects to the shim of task id, as containerd does.
func (h *harness) dialShim(ctx context.Context, id string) *shimclient.Client {
	h.t.Helper()
	addr, err := os.ReadFile(filepath.Join(h.ctd.Dir, "state", "io.containerd.runtime.v2.task", "vessel-test", id, "address"))
	if err != nil {
		h.t.Fatal(err)
	}
	c, err := shimclient.Dial(ctx, strings.TrimSpace(string(addr)))
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

// assertNoLeftovers checks no shim, QEMU, mount or sandbox state remains.
func (h *harness) assertNoLeftovers() {
	t := h.t
	for _, pat := range []string{"containerd-shim-vessel-v2", "vessel-"} {
		out, _ := exec.Command("pgrep", "-af", pat).Output()
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if line != "" && (strings.Contains(line, h.sbRoot) || strings.Contains(line, h.ctd.Address)) {
				t.Errorf("process left behind: %s", line)
			}
		}
	}
	// A shim stops its stand-ins before it answers Delete; a shim that was killed leaves its
	// stand-ins to end at the end of file on their stdin, a moment after it.
	deadline := time.Now().Add(10 * time.Second)
	for left := h.standIns(); len(left) > 0; left = h.standIns() {
		if time.Now().After(deadline) {
			t.Errorf("task stand-ins left behind: %v", left)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if m, _ := sharefs.MountsUnder(h.sbRoot); len(m) > 0 {
		t.Errorf("mounts left: %v", m)
	}
	entries, _ := os.ReadDir(h.sbRoot)
	if len(entries) > 0 {
		t.Errorf("sandbox state left: %v", entries)
	}
	if l := testutil.VMMIDLeasesUnder(h.sbRoot); len(l) > 0 {
		t.Errorf("vmm id leases left: %q", l)
	}
	// ctr puts each task's cgroupsPath below its namespace's cgroup, where the shim makes
	// the sandbox's host cgroup.
	for _, dir := range []string{"/sys/fs/cgroup/memory/vessel-test", "/sys/fs/cgroup/vessel-test"} {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if e.IsDir() {
				t.Errorf("host cgroup left: %s/%s", dir, e.Name())
			}
		}
	}
}

// standIns lists the task stand-ins (internal/taskpid) of the harness's shims: the
// processes named taskpid.Argv0 that run the shim binary it built.
func (h *harness) standIns() []string {
	h.t.Helper()
	dirs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		h.t.Fatal(err)
	}
	var out []string
	for _, d := range dirs {
		cmdline, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err != nil || !bytes.HasPrefix(cmdline, []byte(taskpid.Argv0+"\x00")) {
			continue
		}
		if exe, err := os.Readlink(filepath.Join(d, "exe")); err == nil && strings.HasPrefix(exe, h.binDir+"/") {
			out = append(out, filepath.Base(d)+" "+strings.ReplaceAll(string(cmdline), "\x00", " "))
		}
	}
	return out
}

func TestCtrRun(t *testing.T) {
	h := newHarness(t)
	out, code := h.run("hello", "echo", "hi")
	if code != 0 || out != "hi\n" {
		t.Fatalf("ctr run echo hi: got %q exit %d, want \"hi\\n\" 0", out, code)
	}
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"true"}, 0},
		{[]string{"sh", "-c", "exit 3"}, 3},
		// PID 1 of a pid namespace ignores SIGKILL from inside, so a child is killed and
		// the shell passes its status on, as it would under runc.
		{[]string{"sh", "-c", "sleep 100 & kill -9 $!; wait $!"}, 137},
	} {
		if _, code := h.run("code", tc.args...); code != tc.want {
			t.Errorf("%v: exit %d, want %d", tc.args, code, tc.want)
		}
	}
}

// start runs a detached container and registers its removal.
func (h *harness) start(id string, extra []string, args ...string) {
	h.t.Helper()
	ctx, cancel := h.ctx()
	defer cancel()
	full := append([]string{"run", "-d", "--runtime", runtimeName}, extra...)
	full = append(full, testutil.BusyboxImageRef, id)
	if _, err := h.ctd.Ctr(ctx, append(full, args...)...); err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { h.remove(id) })
}

// remove kills and deletes a container, ignoring "not found".
func (h *harness) remove(id string) {
	ctx, cancel := h.ctx()
	defer cancel()
	_, _ = h.ctd.Ctr(ctx, "task", "kill", "-s", "SIGKILL", id)
	_, _ = h.ctd.Ctr(ctx, "task", "delete", "--force", id)
	_, _ = h.ctd.Ctr(ctx, "container", "delete", id)
}

func (h *harness) ctr(args ...string) string {
	h.t.Helper()
	ctx, cancel := h.ctx()
	defer cancel()
	out, err := h.ctd.Ctr(ctx, args...)
	if err != nil {
		h.t.Fatal(err)
	}
	return out
}

// taskStatus returns the STATUS column of `ctr task ls` for id.
func (h *harness) taskStatus(id string) string {
	h.t.Helper()
	for _, line := range strings.Split(h.ctr("task", "ls"), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == id {
			return f[2]
		}
	}
	return ""
}

// waitEvent reads events until one on topic mentions every string in want.
func waitEvent(t *testing.T, events <-chan string, topic string, want ...string) string {
	t.Helper()
	timeout := time.After(2 * time.Minute)
	var seen []string
	for {
		select {
		case line, ok := <-events:
			if !ok {
				t.Fatalf("event stream ended before %s %v", topic, want)
			}
			if !strings.Contains(line, topic) {
				continue
			}
			seen = append(seen, line)
			match := true
			for _, w := range want {
				match = match && strings.Contains(line, w)
			}
			if match {
				return line
			}
		case <-timeout:
			t.Fatalf("no %s event with %v; saw:\n%s", topic, want, strings.Join(seen, "\n"))
		}
	}
}

func TestCtrTaskVerbs(t *testing.T) {
	h := newHarness(t)
	events := h.ctd.Events(t)
	h.start("box", nil, "sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /tmp/count; usleep 100000; done")
	waitEvent(t, events, "/tasks/start", `"box"`)

	t.Run("host cgroup", func(t *testing.T) {
		// ctr's cgroupsPath is /<namespace>/<id>: the VM is charged there on the host.
		if got, want := testutil.MemoryCgroup(t, h.qemuPid("box")), "/vessel-test/box"; got != want {
			t.Fatalf("qemu is in host cgroup %s, want %s", got, want)
		}
	})

	t.Run("monitor", func(t *testing.T) {
		// vessel-monitor's collector finds the sandbox from its state and reads its QEMU.
		reg := prometheus.NewRegistry()
		reg.MustRegister(monitor.New(h.sbRoot))
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		values := map[string]float64{}
		for _, f := range families {
			for _, m := range f.GetMetric() {
				values[f.GetName()] += m.GetGauge().GetValue() + m.GetCounter().GetValue()
			}
		}
		if values["vessel_sandboxes"] != 1 || values["vessel_process_up"] != 1 || values["vessel_process_pss_bytes"] < 32<<20 {
			t.Errorf("monitor sees %v; want one sandbox whose QEMU runs with a PSS of at least 32 MiB", values)
		}
	})
	t.Run("guest console in the shim log", func(t *testing.T) {
		// The agent logs to the guest console; the shim forwards each line at debug level.
		found := slices.ContainsFunc(strings.Split(h.ctd.Log(t), "\n"), func(line string) bool {
			return strings.Contains(line, `msg="guest console"`) && strings.Contains(line, "vessel-agent") && strings.Contains(line, "ready")
		})
		if !found {
			t.Errorf("the containerd log has no forwarded guest console line with the agent's ready message")
		}
	})
	t.Run("exec", func(t *testing.T) {
		out := h.ctr("task", "exec", "--exec-id", "e1", "box", "sh", "-c", "echo exec-ok; pidof sh")
		if !strings.Contains(out, "exec-ok") {
			t.Errorf("exec output %q", out)
		}
		waitEvent(t, events, "/tasks/exec-added", `"e1"`)
		waitEvent(t, events, "/tasks/exec-started", `"e1"`)
	})
	t.Run("ps", func(t *testing.T) {
		out := h.ctr("task", "ps", "box")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) < 2 {
			t.Errorf("ctr task ps lists no process: %q", out)
		}
	})
	t.Run("metrics", func(t *testing.T) {
		out := h.ctr("task", "metrics", "box")
		for _, want := range []string{"memory", "cpu"} {
			if !strings.Contains(strings.ToLower(out), want) {
				t.Errorf("metrics lack %s figures: %q", want, out)
			}
		}
	})
	t.Run("pause resume", func(t *testing.T) {
		counter := filepath.Join(h.ctd.Dir, "state", "io.containerd.runtime.v2.task", "vessel-test", "box", "rootfs", "tmp", "count")
		read := func() string { b, _ := os.ReadFile(counter); return strings.TrimSpace(string(b)) }
		first := read()
		testutil.WaitFor(t, "the counter to advance", func() bool { return read() != first })
		h.ctr("task", "pause", "box")
		waitEvent(t, events, "/tasks/paused", `"box"`)
		if st := h.taskStatus("box"); st != "PAUSED" {
			t.Errorf("status after pause: %s", st)
		}
		frozen := read()
		time.Sleep(time.Second) // observing that nothing happens needs a window
		if got := read(); got != frozen {
			t.Errorf("counter advanced while paused: %s -> %s", frozen, got)
		}
		h.ctr("task", "resume", "box")
		waitEvent(t, events, "/tasks/resumed", `"box"`)
		testutil.WaitFor(t, "the counter to advance after resume", func() bool { return read() != frozen })
	})
	t.Run("kill", func(t *testing.T) {
		// PID 1 ignores SIGTERM until the trap is set: wait for the script to say it is.
		h.start("term", nil, "sh", "-c", "trap 'exit 42' TERM; touch /tmp/trapped; while true; do usleep 50000; done")
		trapped := filepath.Join(h.ctd.Dir, "state", "io.containerd.runtime.v2.task", "vessel-test", "term", "rootfs", "tmp", "trapped")
		testutil.WaitFor(t, "the TERM trap", func() bool { _, err := os.Stat(trapped); return err == nil })
		h.ctr("task", "kill", "-s", "SIGTERM", "term")
		waitEvent(t, events, "/tasks/exit", `"term"`, `"exit_status":42`)
		h.start("killme", nil, "sleep", "1000")
		waitEvent(t, events, "/tasks/start", `"killme"`)
		h.ctr("task", "kill", "-s", "SIGKILL", "killme")
		waitEvent(t, events, "/tasks/exit", `"killme"`, `"exit_status":137`)
	})
}

func TestCtrRunTerminal(t *testing.T) {
	h := newHarness(t)
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
	ctx, cancel := h.ctx()
	defer cancel()
	cmd := h.ctd.CtrCmd(ctx, "run", "--rm", "-t", "--runtime", runtimeName, testutil.BusyboxImageRef, "tty", "sh", "-c", "tty; stty size; exit 5")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close()
	var out strings.Builder
	done := make(chan struct{})
	go func() { _, _ = io.Copy(&out, pty); close(done) }()
	err = cmd.Wait()
	pty.Close()
	<-done
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 5 {
		t.Errorf("exit: got %v, want status 5", err)
	}
	if !strings.Contains(out.String(), "/dev/pts/") || !strings.Contains(out.String(), "33 99") {
		t.Errorf("terminal output %q: want a /dev/pts tty of size 33 99", out.String())
	}
}

func TestPodSharesOneVM(t *testing.T) {
	h := newHarness(t)
	pod := []string{"--annotation", "io.kubernetes.cri.container-type=sandbox", "--annotation", "io.kubernetes.cri.sandbox-id=pod1"}
	h.start("pod1", pod, "sleep", "1000")
	member := []string{
		"--annotation", "io.kubernetes.cri.container-type=container", "--annotation", "io.kubernetes.cri.sandbox-id=pod1",
		"--with-ns", "pid:/proc/" + strconv.Itoa(h.taskPid("pod1")) + "/ns/pid",
	}
	h.start("app", member, "sleep", "2000")
	out := h.ctr("task", "exec", "--exec-id", "look", "app", "sh", "-c", "ps -o args")
	if !strings.Contains(out, "sleep 1000") || !strings.Contains(out, "sleep 2000") {
		t.Errorf("pod containers do not see each other's processes: %q", out)
	}
	// A pod's containers share one network namespace (the guest's), as they share the
	// pause container's on the host: they reach each other on localhost.
	sandboxNet := strings.TrimSpace(h.ctr("task", "exec", "--exec-id", "net1", "pod1", "readlink", "/proc/self/ns/net"))
	appNet := strings.TrimSpace(h.ctr("task", "exec", "--exec-id", "net2", "app", "readlink", "/proc/self/ns/net"))
	if !strings.HasPrefix(sandboxNet, "net:[") || sandboxNet != appNet {
		t.Errorf("pod containers are in network namespaces %q and %q, want one", sandboxNet, appNet)
	}
	qemus, _ := exec.Command("pgrep", "-f", "qemu-system.*"+h.sbRoot).Output()
	if n := len(strings.Fields(string(qemus))); n != 1 {
		t.Errorf("got %d QEMU processes for one pod, want 1", n)
	}
	// In the VM each container's cgroup is at its cgroupsPath (ctr's /<namespace>/<id>),
	// as runc places it on the host; ctr's spec has no cgroup namespace here.
	for _, id := range []string{"pod1", "app"} {
		got := strings.TrimSpace(h.ctr("task", "exec", "--exec-id", "cg-"+id, id, "cat", "/proc/self/cgroup"))
		if want := "0::/vessel-test/" + id; got != want {
			t.Errorf("exec in %s: /proc/self/cgroup %q, want %q", id, got, want)
		}
	}
}

func TestOOM(t *testing.T) {
	h := newHarness(t)
	events := h.ctd.Events(t)
	_, code := h.runFlags([]string{"--memory-limit", "33554432"}, "oom", "sh", "-c", "tail /dev/zero")
	if code != 137 {
		t.Errorf("exit code of an OOM-killed container: %d, want 137", code)
	}
	waitEvent(t, events, "/tasks/oom", `"oom"`)
}

func TestRunDeleteCycles(t *testing.T) {
	h := newHarness(t)
	for i := 0; i < 20; i++ {
		if out, code := h.run("cycle", "echo", "ok"); code != 0 || out != "ok\n" {
			t.Fatalf("cycle %d: got %q exit %d", i, out, code)
		}
		h.assertNoLeftovers()
	}
}

// shimPid returns the pid of the shim of task id (its Connect answer).
func (h *harness) shimPid(id string) int {
	h.t.Helper()
	ctx, cancel := h.ctx()
	defer cancel()
	c := h.dialShim(ctx, id)
	defer c.Close()
	resp, err := c.Connect(ctx, &taskAPI.ConnectRequest{ID: id})
	if err != nil {
		h.t.Fatalf("connect to the shim of %s: %v", id, err)
	}
	return int(resp.ShimPid)
}

// taskPid returns the pid `ctr task ls` shows for a task: its host stand-in's.
func (h *harness) taskPid(id string) int {
	h.t.Helper()
	for _, line := range strings.Split(h.ctr("task", "ls"), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == id {
			pid, err := strconv.Atoi(f[1])
			if err != nil {
				h.t.Fatal(err)
			}
			return pid
		}
	}
	h.t.Fatalf("task %s not listed", id)
	return 0
}

// qemuPid returns the pid of the QEMU process of sandbox id.
func (h *harness) qemuPid(id string) int {
	h.t.Helper()
	out, err := exec.Command("pgrep", "-f", "qemu-system.*-name vessel-"+id+" ").Output()
	if err != nil {
		h.t.Fatalf("no QEMU for %s: %v", id, err)
	}
	pid, err := strconv.Atoi(strings.Fields(string(out))[0])
	if err != nil {
		h.t.Fatal(err)
	}
	return pid
}

func TestCrashCleanup(t *testing.T) {
	for _, victim := range []string{"shim", "qemu"} {
		t.Run(victim, func(t *testing.T) {
			h := newHarness(t)
			events := h.ctd.Events(t)
			h.start("crash", nil, "sleep", "1000")
			pid := h.shimPid("crash")
			if victim == "qemu" {
				pid = h.qemuPid("crash")
			}
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			waitEvent(t, events, "/tasks/exit", `"crash"`)
			// containerd runs `shim delete` for a dead shim and drops the task itself; a
			// task that is still listed must be stopped and deletable.
			testutil.WaitFor(t, "the task to stop", func() bool { s := h.taskStatus("crash"); return s == "STOPPED" || s == "" })
			if h.taskStatus("crash") != "" {
				h.ctr("task", "delete", "crash")
			}
			h.ctr("container", "delete", "crash")
			if out := h.ctr("task", "ls"); strings.Contains(out, "crash") {
				t.Errorf("task still listed: %q", out)
			}
			// Cleanup asserts no QEMU, shim, mount or state is left.
		})
	}
}

func TestContainerdRestart(t *testing.T) {
	h := newHarness(t)
	h.start("survivor", nil, "sleep", "1000")
	h.ctd.Restart(t)
	out := h.ctr("task", "exec", "--exec-id", "after", "survivor", "echo", "still here")
	if out != "still here\n" {
		t.Errorf("exec after containerd restart: %q", out)
	}
	if st := h.taskStatus("survivor"); st != "RUNNING" {
		t.Errorf("status after restart: %s", st)
	}
}
