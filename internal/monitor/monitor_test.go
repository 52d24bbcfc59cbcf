package monitor

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vessel-containers/vessel/internal/persist"
	"github.com/vessel-containers/vessel/internal/procid"
)

// child starts a process that stands in for a VMM or a file server daemon.
func child(t *testing.T) procid.ID {
	t.Helper()
	cmd := exec.Command("sleep", "600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	id, err := procid.Of(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func save(t *testing.T, root string, st *persist.Sandbox) {
	t.Helper()
	dir := filepath.Join(root, st.ID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := persist.Save(dir, st); err != nil {
		t.Fatal(err)
	}
}

// The collector reports each sandbox from its state: containers, and the cost of its live
// recorded processes; a process whose pid now names another process is down; an
// unreadable state is counted; a directory without state (a sandbox being made) is not.
func TestCollector(t *testing.T) {
	root := t.TempDir()
	vmm, fsd := child(t), child(t)
	save(t, root, &persist.Sandbox{ID: "sb1", Created: time.Now(), VMPid: vmm.Pid, VMStartTime: vmm.StartTime,
		FSDaemonPid: fsd.Pid, FSDaemonStartTime: fsd.StartTime, State: "running",
		Containers: map[string]persist.Container{"a": {ID: "a"}, "b": {ID: "b"}}})
	// sb2's VMM pid is ours but with another start time: a reused pid.
	self, err := procid.Self()
	if err != nil {
		t.Fatal(err)
	}
	save(t, root, &persist.Sandbox{ID: "sb2", Created: time.Now(), VMPid: self.Pid, VMStartTime: self.StartTime + 1, State: "running"})
	if err := os.MkdirAll(filepath.Join(root, "creating"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "broken"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "broken", "state.json"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}

	c := New(root)
	if err := testutil.CollectAndCompare(c, strings.NewReader(`
# HELP vessel_sandboxes Sandboxes with a readable state.
# TYPE vessel_sandboxes gauge
vessel_sandboxes 2
# HELP vessel_sandbox_state_errors Sandbox directories whose state cannot be read.
# TYPE vessel_sandbox_state_errors gauge
vessel_sandbox_state_errors 1
# HELP vessel_sandbox_containers Containers in the sandbox.
# TYPE vessel_sandbox_containers gauge
vessel_sandbox_containers{sandbox="sb1"} 2
vessel_sandbox_containers{sandbox="sb2"} 0
# HELP vessel_process_up 1 when the sandbox's recorded process (vmm, fs_daemon) runs.
# TYPE vessel_process_up gauge
vessel_process_up{process="fs_daemon",sandbox="sb1"} 1
vessel_process_up{process="vmm",sandbox="sb1"} 1
vessel_process_up{process="vmm",sandbox="sb2"} 0
`), "vessel_sandboxes", "vessel_sandbox_state_errors", "vessel_sandbox_containers", "vessel_process_up"); err != nil {
		t.Fatal(err)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["sandbox"] != "sb1" || labels["process"] == "" {
				continue
			}
			v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
			got[f.GetName()+"/"+labels["process"]] = v
		}
	}
	for _, p := range []string{"vmm", "fs_daemon"} {
		for _, name := range []string{"vessel_process_resident_memory_bytes", "vessel_process_pss_bytes", "vessel_process_open_fds", "vessel_process_threads"} {
			if got[name+"/"+p] <= 0 {
				t.Errorf("%s of %s = %v, want > 0", name, p, got[name+"/"+p])
			}
		}
		if _, ok := got["vessel_process_cpu_seconds_total/"+p]; !ok {
			t.Errorf("no CPU time for %s", p)
		}
	}
	for k := range got {
		if strings.HasSuffix(k, "/vmm") && strings.Contains(k, "sb2") {
			t.Errorf("sb2's reused pid reported: %s", k)
		}
	}
}

// A root that does not exist yet (no sandbox ever ran) is zero sandboxes, not an error.
func TestCollectorNoRoot(t *testing.T) {
	c := New(filepath.Join(t.TempDir(), "missing"))
	if n := testutil.CollectAndCount(c, "vessel_sandboxes"); n != 1 {
		t.Fatalf("%d vessel_sandboxes samples", n)
	}
	if v := testutil.ToFloat64(prometheus.CollectorFunc(func(ch chan<- prometheus.Metric) {
		all := make(chan prometheus.Metric, 16)
		c.Collect(all)
		close(all)
		for m := range all {
			if strings.Contains(m.Desc().String(), "vessel_sandboxes\"") {
				ch <- m
			}
		}
	})); v != 0 {
		t.Fatalf("vessel_sandboxes = %v, want 0", v)
	}
}

// BenchmarkCollect50 scrapes 50 sandboxes, each with a live VMM and file server stand-in.
func BenchmarkCollect50(b *testing.B) {
	root := b.TempDir()
	for i := range 50 {
		var ids [2]procid.ID
		for j := range ids {
			cmd := exec.Command("sleep", "600")
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
			id, err := procid.Of(cmd.Process.Pid)
			if err != nil {
				b.Fatal(err)
			}
			ids[j] = id
		}
		st := &persist.Sandbox{ID: "sb" + strconv.Itoa(i), Created: time.Now(), State: "running",
			VMPid: ids[0].Pid, VMStartTime: ids[0].StartTime, FSDaemonPid: ids[1].Pid, FSDaemonStartTime: ids[1].StartTime}
		dir := filepath.Join(root, st.ID)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			b.Fatal(err)
		}
		if err := persist.Save(dir, st); err != nil {
			b.Fatal(err)
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(New(root))
	b.ResetTimer()
	for b.Loop() {
		if _, err := reg.Gather(); err != nil {
			b.Fatal(err)
		}
	}
}
