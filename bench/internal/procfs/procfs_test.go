package procfs

import (
	"os"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	// comm may hold spaces and parentheses; utime and stime are fields 14 and 15.
	line := []byte("42 (qemu (x) y) S 7 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 1000 0 0\n")
	got, err := parseStat(42, line)
	if err != nil {
		t.Fatal(err)
	}
	want := Stat{Pid: 42, PPid: 7, Comm: "qemu (x) y", CPU: 3 * time.Second}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if _, err := parseStat(1, []byte("1 (init) S")); err == nil {
		t.Error("short stat line parsed")
	}
}

func TestMemInfo(t *testing.T) {
	total, avail, err := MemInfo([]byte("MemTotal:  243844 kB\nMemFree: 1 kB\nMemAvailable:   218680 kB\n"))
	if err != nil {
		t.Fatal(err)
	}
	if total != 243844*1024 || avail != 218680*1024 {
		t.Errorf("got %d, %d", total, avail)
	}
	if _, _, err := MemInfo([]byte("MemTotal: 1 kB\n")); err == nil {
		t.Error("meminfo without MemAvailable parsed")
	}
}

func TestBusyFraction(t *testing.T) {
	if got := BusyFraction(CPUTimes{Idle: 100, Total: 200}, CPUTimes{Idle: 175, Total: 300}); got != 0.25 {
		t.Errorf("got %v, want 0.25", got)
	}
	if got := BusyFraction(CPUTimes{}, CPUTimes{}); got != 0 {
		t.Errorf("got %v for no time, want 0", got)
	}
}

func TestSelf(t *testing.T) {
	pss, err := PSS(os.Getpid())
	if err != nil {
		t.Skipf("no smaps_rollup here: %v", err)
	}
	if pss == 0 {
		t.Error("own PSS is zero")
	}
	tree, err := Tree(os.Getpid())
	if err != nil || len(tree) == 0 || tree[0].Pid != os.Getpid() {
		t.Errorf("got %v, %v; want a tree rooted at this process", tree, err)
	}
	if _, err := ReadCPUTimes(); err != nil {
		t.Error(err)
	}
}
