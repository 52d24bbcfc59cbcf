package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
)

func TestFillPsInfoSelf(t *testing.T) {
	btime, err := bootTimeUnix("/proc")
	if err != nil {
		t.Fatal(err)
	}
	info := &agentv1.ProcessInfo{}
	fillPsInfo(info, "/proc", os.Getpid(), btime)
	exe, _ := os.Executable()
	if info.Comm == "" || !strings.HasPrefix(filepath.Base(exe), info.Comm) {
		t.Errorf("comm %q, want a prefix of %q", info.Comm, filepath.Base(exe))
	}
	if info.Ppid != uint32(os.Getppid()) || info.Uid != uint32(os.Geteuid()) {
		t.Errorf("ppid %d uid %d, want %d %d", info.Ppid, info.Uid, os.Getppid(), os.Geteuid())
	}
	// A Go test binary runs several threads.
	if !strings.Contains(info.Stat, "l") {
		t.Errorf("stat %q of a multi-threaded process has no l", info.Stat)
	}
	started := time.UnixMilli(info.StartTimeUnixMs)
	if d := time.Since(started); d < 0 || d > 10*time.Minute {
		t.Errorf("start time %v is %v ago, want within the test's run", started, d)
	}
}

func TestReadProcStatOddComm(t *testing.T) {
	proc := t.TempDir()
	dir := filepath.Join(proc, "7")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// comm with a space and a parenthesis; session leader, foreground, niced.
	stat := "7 (a b) c) S 1 7 7 34816 7 4194560 0 0 0 0 250 50 0 0 20 5 1 0 1234 0 0\n"
	status := "Name:\ta b) c\nUid:\t0\t1000\t1000\t1000\nVmLck:\t       0 kB\n"
	if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "status"), []byte(status), 0o644); err != nil {
		t.Fatal(err)
	}
	info := &agentv1.ProcessInfo{}
	fillPsInfo(info, proc, 7, 1000)
	want := &agentv1.ProcessInfo{
		Uid: 1000, Ppid: 1, Tty: "pts/0", Stat: "SNs+", CpuTimeMs: 3000,
		StartTimeUnixMs: 1000*1000 + 12340, Comm: "a b) c",
	}
	if info.Uid != want.Uid || info.Ppid != want.Ppid || info.Tty != want.Tty || info.Stat != want.Stat ||
		info.CpuTimeMs != want.CpuTimeMs || info.StartTimeUnixMs != want.StartTimeUnixMs || info.Comm != want.Comm {
		t.Errorf("got %+v\nwant %+v", info, want)
	}
}

func TestTTYName(t *testing.T) {
	for nr, want := range map[int]string{
		0: "?", 136<<8 | 3: "pts/3", 137<<8 | 1: "pts/257", 4<<8 | 1: "tty1", 4<<8 | 64: "ttyS0", 5<<8 | 1: "console", 10<<8 | 1: "?",
	} {
		if got := ttyName(nr); got != want {
			t.Errorf("ttyName(%#x) = %q, want %q", nr, got, want)
		}
	}
}
