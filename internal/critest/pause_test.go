package critest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vessel-containers/vessel/internal/testutil"
)

// TestPauseStandIn runs the pause image's entrypoint in its unpacked root file system as
// PID 1 of a new pid namespace, as a pod's sandbox container runs, and checks what the
// pod's containers, which share that namespace, see of it: one process, named pause (not
// sleep, which critest's execSync with timeout spec looks for), that reaps the
// namespace's orphans and exits 0 on SIGTERM.
func TestPauseStandIn(t *testing.T) {
	testutil.RequiresIntegration(t)
	testutil.RequiresRoot(t)
	work := t.TempDir()
	base, err := busyboxLayer(work)
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	img, err := pauseImage(work, base, env)
	if err != nil {
		t.Fatal(err)
	}
	rootfs := filepath.Join(work, "pause-rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, layer := range img.Layers {
		untar := exec.Command("tar", "-x", "-C", rootfs, "-f", "-")
		untar.Stdin = bytes.NewReader(layer)
		if out, err := untar.CombinedOutput(); err != nil {
			t.Fatalf("unpack layer %d: %v: %s", i, err, out)
		}
	}
	args, ok := img.Config["Entrypoint"].([]string)
	if !ok || len(args) == 0 {
		t.Fatalf("pause image entrypoint = %v, want a command", img.Config["Entrypoint"])
	}

	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = env
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: rootfs, Cloneflags: syscall.CLONE_NEWPID}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	waited := false
	t.Cleanup(func() {
		if !waited {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	// Ready once it handles SIGTERM: before, the signal would end it (or, as PID 1 of its
	// namespace, be ignored).
	poll(t, "pause handles SIGTERM", func() bool { return catches(pid, syscall.SIGTERM) })

	if got, want := tree(pid), []string{"pause"}; !slices.Equal(got, want) {
		t.Errorf("processes of the pause container = %q, want %q", got, want)
	}

	// An orphan in the namespace: a shell started there exits and leaves its background
	// sleep to PID 1, which must wait for it once it is killed.
	orphaner := exec.Command("nsenter", "--target", strconv.Itoa(pid), "--pid", "--", "sh", "-c", "sleep 600 >/dev/null 2>&1 &")
	if out, err := orphaner.CombinedOutput(); err != nil {
		t.Fatalf("start an orphan in the pause container's pid namespace: %v: %s", err, out)
	}
	var orphan int
	poll(t, "orphan re-parented to pause", func() bool {
		kids := children(pid)
		if len(kids) == 1 {
			orphan = kids[0]
		}
		return len(kids) == 1
	})
	if err := syscall.Kill(orphan, syscall.SIGKILL); err != nil {
		t.Fatalf("kill orphan %d: %v", orphan, err)
	}
	poll(t, fmt.Sprintf("orphan %d reaped", orphan), func() bool {
		_, err := os.Stat(filepath.Join("/proc", strconv.Itoa(orphan)))
		return errors.Is(err, os.ErrNotExist)
	})

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	waited = true
	if err != nil {
		t.Errorf("pause after SIGTERM: %v, want exit status 0", err)
	}
}

// poll calls cond every 5 ms until it holds, failing the test after 10 s.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after 10s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// catches reports whether pid has a handler for sig (SigCgt in /proc/<pid>/status).
func catches(pid int, sig syscall.Signal) bool {
	status, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(status), "\n") {
		if hex, ok := strings.CutPrefix(line, "SigCgt:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
			return err == nil && mask&(1<<(uint(sig)-1)) != 0
		}
	}
	return false
}

// children lists the pids of pid's children.
func children(pid int) []int {
	p := strconv.Itoa(pid)
	b, err := os.ReadFile(filepath.Join("/proc", p, "task", p, "children"))
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if n, err := strconv.Atoi(f); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// tree lists the process names (comm) of pid and its descendants, sorted.
func tree(pid int) []string {
	comm, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "comm"))
	if err != nil {
		return nil
	}
	names := []string{strings.TrimSpace(string(comm))}
	for _, c := range children(pid) {
		names = append(names, tree(c)...)
	}
	slices.Sort(names)
	return names
}
