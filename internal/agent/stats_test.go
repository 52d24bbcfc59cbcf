package agent

import (
	"math"
	"os"
	"path/filepath"
	"testing"
)

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCgroupStats(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"cpu.stat":       "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 10\nnr_throttled 2\nthrottled_usec 300\nnr_bursts 0\n",
		"memory.current": "2129920\n",
		"memory.max":     "67108864\n",
		"memory.peak":    "4194304\n",
		"memory.stat":    "anon 1048576\nfile 49152\nkernel 8192\n",
		"memory.events":  "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n",
		"pids.current":   "2\n",
		"pids.max":       "max\n",
		"io.stat":        "254:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n254:16 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0\n",
	})
	st, err := cgroupStats(dir)
	if err != nil {
		t.Fatal(err)
	}
	if c := st.Cpu; c.UsageUsec != 1500 || c.UserUsec != 1000 || c.SystemUsec != 500 || c.NrPeriods != 10 || c.NrThrottled != 2 || c.ThrottledUsec != 300 {
		t.Errorf("cpu = %+v", c)
	}
	if m := st.Memory; m.Usage != 2129920 || m.Limit != 67108864 || m.MaxUsage != 4194304 || m.Anon != 1048576 || m.File != 49152 || m.OomEvents != 1 || m.OomKillEvents != 1 || m.SwapUsage != 0 {
		t.Errorf("memory = %+v", m)
	}
	if p := st.Pids; p.Current != 2 || p.Limit != math.MaxUint64 {
		t.Errorf("pids = %+v", p)
	}
	if io := st.Io; io.ReadBytes != 4097 || io.WriteBytes != 8194 || io.ReadIos != 4 || io.WriteIos != 6 {
		t.Errorf("io = %+v", io)
	}
}

func TestCgroupStatsMissingControllers(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"cpu.stat": "usage_usec 7\n"})
	st, err := cgroupStats(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Cpu.GetUsageUsec() != 7 || st.Memory != nil || st.Pids != nil || st.Io != nil {
		t.Fatalf("stats = %+v", st)
	}
	if _, err := cgroupStats(filepath.Join(dir, "gone")); err == nil {
		t.Fatal("no error for a missing cgroup")
	}
}

func TestCgroupStatsMalformed(t *testing.T) {
	for name, files := range map[string]map[string]string{
		"flat keyed": {"cpu.stat": "usage_usec lots\n"},
		"single":     {"memory.current": "12kB\n"},
		"io.stat":    {"io.stat": "254:0 rbytes=x\n"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, files)
			if _, err := cgroupStats(dir); err == nil {
				t.Fatal("no error for a malformed file")
			}
		})
	}
}

func TestReadFlatKeyedOOMCount(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"memory.events": "oom 3\noom_kill 2\n"})
	c := &container{cgroupDir: dir}
	if got := c.oomKills(); got != 2 {
		t.Fatalf("oomKills = %d", got)
	}
	if got := (&container{cgroupDir: filepath.Join(dir, "x")}).oomKills(); got != 0 {
		t.Fatalf("oomKills of a missing cgroup = %d", got)
	}
}
