//go:build cgo

package taskpid

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

// maxStandInAnonKiB bounds a stand-in's anonymous memory: what the C loop, the dynamic
// loader and libc touch (about 100 KiB). A stand-in that starts the Go runtime has
// megabytes (heap arenas, goroutine stacks, the runtime's threads).
const maxStandInAnonKiB = 256

// TestStandInRunsNoGoRuntime: a stand-in waits for end of file in a process of one
// thread with little anonymous memory, as the C constructor makes it before the Go
// runtime starts.
func TestStandInRunsNoGoRuntime(t *testing.T) {
	p, err := Start(nil, "ns/ctr")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	waitReading(t, p.Pid())
	status := procFields(t, fmt.Sprintf("/proc/%d/status", p.Pid()))
	if got := status["Threads"]; got != "1" {
		t.Errorf("stand-in %d has %s threads, want 1 (no Go runtime)", p.Pid(), got)
	}
	rollup := procFields(t, fmt.Sprintf("/proc/%d/smaps_rollup", p.Pid()))
	anon, err := strconv.Atoi(strings.TrimSuffix(rollup["Anonymous"], " kB"))
	if err != nil {
		t.Fatalf("smaps_rollup of stand-in %d: Anonymous %q: %v", p.Pid(), rollup["Anonymous"], err)
	}
	t.Logf("stand-in %d: Rss %s, Pss %s, Anonymous %d kB", p.Pid(), rollup["Rss"], rollup["Pss"], anon)
	if anon > maxStandInAnonKiB {
		t.Errorf("stand-in %d has %d KiB of anonymous memory, want at most %d (no Go runtime)", p.Pid(), anon, maxStandInAnonKiB)
	}
}

// procFields reads a /proc file of "Key: value" lines.
func procFields(t testing.TB, file string) map[string]string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := map[string]string{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		if k, v, ok := strings.Cut(s.Text(), ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	return m
}
