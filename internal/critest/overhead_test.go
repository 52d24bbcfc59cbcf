package critest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vessel-containers/vessel/internal/testutil"
)

// TestPodOverhead measures what one idle Vessel pod costs the host beyond its containers,
// the figures a RuntimeClass's overhead.podFixed is set from (docs/kubernetes.md): it runs
// a pod through CRI (CRICTL_BIN) whose container sleeps, lets it settle, and reports the
// RSS of the guest's RAM mapping in QEMU, QEMU's other RSS, the shim's PSS and QEMU's CPU
// use over CRITEST_OVERHEAD_SECONDS (default 30) into CRITEST_OUT/overhead.txt.
func TestPodOverhead(t *testing.T) {
	if os.Getenv("VESSEL_CRITEST") != "1" {
		t.Skip("set VESSEL_CRITEST=1 (make pod-overhead) to measure a pod's overhead")
	}
	testutil.RequiresVM(t)
	crictl := os.Getenv("CRICTL_BIN")
	if crictl == "" {
		t.Fatal("CRICTL_BIN names no crictl binary (make pod-overhead builds one)")
	}
	window := 30 * time.Second
	if s := os.Getenv("CRITEST_OVERHEAD_SECONDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("CRITEST_OVERHEAD_SECONDS=%q: want a positive number of seconds", s)
		}
		window = time.Duration(n) * time.Second
	}
	out := os.Getenv("CRITEST_OUT")
	if out == "" {
		out = filepath.Join(testutil.RepoRoot(t), "_output", "critest")
	}
	d := startCRI(t, out)
	cri, write := crictlFor(t, crictl, d.Address)
	pod := write("pod.json", map[string]any{
		"metadata": map[string]any{"name": "overhead", "uid": "overhead-uid", "namespace": "default"},
		"linux":    map[string]any{},
	})
	ctr := write("ctr.json", map[string]any{
		"metadata": map[string]any{"name": "sleeper"},
		"image":    map[string]any{"image": e2eImages + "busybox:1.29-2"},
		"command":  []string{"sleep", "86400"},
	})
	cri("pull", e2eImages+"busybox:1.29-2")
	podID := cri("runp", "--runtime", "vessel", pod)
	t.Cleanup(func() {
		removePod(t, crictl, d.Address, podID)
	})
	cri("start", cri("create", podID, ctr, pod))

	qemu, mem := qemuOf(t, podID)
	shim := ppidOf(t, qemu)
	// The boot's work is done once the container runs; a few seconds let the guest's
	// page cache and QEMU's translation cache reach their idle size before the window.
	time.Sleep(5 * time.Second)
	cpu0 := cpuTicks(t, qemu)
	start := time.Now()
	time.Sleep(window)
	cpu1 := cpuTicks(t, qemu)
	elapsed := time.Since(start)
	guest, other := qemuRSS(t, qemu, mem)
	shimPSS := pssOf(t, shim)
	millicores := float64(cpu1-cpu0) / float64(clockTicks) / elapsed.Seconds() * 1000
	report := fmt.Sprintf("guest memory %d MiB (-m), guest RAM resident %d MiB, QEMU other resident %d MiB, shim PSS %d MiB, QEMU CPU %.0fm over %s\n",
		mem>>20, guest>>20, other>>20, shimPSS>>20, millicores, elapsed.Round(time.Second))
	t.Log(report)
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, "overhead.txt"), []byte(report), 0o644); err != nil {
		t.Fatal(err)
	}
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's CPU times (100 on Linux).
const clockTicks = 100

// qemuOf finds the QEMU process of the pod sandbox (its -name is vessel-<id>) and returns
// its pid and the guest memory size its -m gives, in bytes.
func qemuOf(t *testing.T, podID string) (int, int64) {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(bytes.TrimRight(raw, "\x00")), "\x00")
		named := false
		var mem int64
		for i := 0; i+1 < len(args); i++ {
			switch args[i] {
			case "-name":
				named = strings.HasPrefix(args[i+1], "vessel-"+podID)
			case "-m":
				v := strings.SplitN(args[i+1], ",", 2)[0]
				if n, err := strconv.ParseInt(strings.TrimSuffix(v, "M"), 10, 64); err == nil {
					mem = n << 20
				}
			}
		}
		if named && mem > 0 {
			return pid, mem
		}
	}
	t.Fatalf("no QEMU process named vessel-%s with a -m size", podID)
	return 0, 0
}

func ppidOf(t *testing.T, pid int) int {
	t.Helper()
	f := statFields(t, pid)
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		t.Fatal(err)
	}
	return ppid
}

// cpuTicks is pid's user plus system CPU time in clock ticks.
func cpuTicks(t *testing.T, pid int) int64 {
	t.Helper()
	f := statFields(t, pid)
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("/proc/%d/stat times %q %q", pid, f[11], f[12])
	}
	return utime + stime
}

// statFields are the fields of /proc/<pid>/stat after the command name: state is [0].
func statFields(t *testing.T, pid int) []string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		t.Fatalf("/proc/%d/stat: %q", pid, b)
	}
	return strings.Fields(string(b[i+1:]))
}

// qemuRSS splits QEMU's resident memory into the guest RAM mapping (the mapping of the
// guest memory's size) and everything else, in bytes.
func qemuRSS(t *testing.T, pid int, mem int64) (guest, other int64) {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var size int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "Size":
			size = kb << 10
		case "Rss":
			if size == mem {
				guest += kb << 10
			} else {
				other += kb << 10
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return guest, other
}

// pssOf is pid's proportional set size in bytes.
func pssOf(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Pss:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("/proc/%d/smaps_rollup has no Pss", pid)
	return 0
}

// crictlFor returns a runner of crictl against the daemon at address, which fails the test
// on error and returns the command's output, and a writer of JSON files for it.
func crictlFor(t *testing.T, crictl, address string) (cri func(args ...string) string, write func(name string, v any) string) {
	dir := t.TempDir()
	cri = func(args ...string) string {
		t.Helper()
		full := append([]string{"--runtime-endpoint", "unix://" + address, "--image-endpoint", "unix://" + address, "--timeout", "5m"}, args...)
		cmd := exec.Command(crictl, full...)
		cmd.Dir = dir
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		b, err := cmd.Output()
		if err != nil {
			t.Fatalf("crictl %s: %v: %s", strings.Join(args, " "), err, stderr.Bytes())
		}
		return strings.TrimSpace(string(b))
	}
	write = func(name string, v any) string {
		t.Helper()
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return cri, write
}

// removePod stops and removes a pod at test cleanup, before the daemon stops.
func removePod(t *testing.T, crictl, address, podID string) {
	cmd := exec.Command(crictl, "--runtime-endpoint", "unix://"+address, "--timeout", "5m", "rmp", "--force", podID)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("remove pod %s: %v: %s", podID, err, b)
	}
}
