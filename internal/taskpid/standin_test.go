//go:build cgo

package taskpid

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vessel-containers/vessel/internal/testutil"
)

// TestStartInCgroup: a stand-in started with a cgroup is in it when Start returns; one
// whose cgroup cannot be joined is not started, and its process is gone.
func TestStartInCgroup(t *testing.T) {
	testutil.RequiresRoot(t)
	root := testutil.CgroupV2Root(t)
	name := fmt.Sprintf("/vessel-taskpid-test-%d", os.Getpid())
	dir := filepath.Join(root, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := os.Remove(dir); err != nil {
			t.Errorf("remove test cgroup: %v", err)
		}
	}()

	p, err := Start([]string{dir}, "ns/ctr")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", p.Pid()))
	if err != nil {
		t.Fatal(err)
	}
	if want := "0::" + name + "\n"; !strings.Contains(string(b), want) {
		t.Errorf("stand-in %d is in %q, want the line %q", p.Pid(), b, want)
	}
	p.Stop()

	_, err = Start([]string{filepath.Join(dir, "missing")}, "ns/ctr")
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Start in a cgroup that does not exist: %v, want ErrNotExist", err)
	}
	if kids := standInChildren(t); len(kids) > 0 {
		t.Errorf("stand-ins %v still run after Start failed", kids)
	}
}

// standInChildren lists this process's children that are stand-ins.
func standInChildren(t *testing.T) []string {
	t.Helper()
	tasks, err := filepath.Glob("/proc/self/task/*/children")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		for _, pid := range strings.Fields(string(b)) {
			cmdline, err := os.ReadFile("/proc/" + pid + "/cmdline")
			if err == nil && bytes.HasPrefix(cmdline, []byte(Argv0+"\x00")) {
				out = append(out, pid)
			}
		}
	}
	return out
}

// BenchmarkStandIn measures a stand-in's life: from Start until it waits on its stdin,
// then Stop.
func BenchmarkStandIn(b *testing.B) {
	for range b.N {
		p, err := Start(nil, "bench")
		if err != nil {
			b.Fatal(err)
		}
		waitReading(b, p.Pid())
		p.Stop()
	}
}

// waitReading waits until process pid blocks in read(2) of its stdin: the stand-in is
// ready, any runtime it started is up.
func waitReading(t testing.TB, pid int) {
	t.Helper()
	file := fmt.Sprintf("/proc/%d/syscall", pid)
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatalf("stand-in %d: %v", pid, err)
		}
		// "0 0x0 ...": read(2) of file descriptor 0, blocked.
		if f := strings.Fields(string(b)); len(f) > 1 && f[0] == "0" && f[1] == "0x0" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stand-in %d does not wait on its stdin after 30 s: %s is %q", pid, file, bytes.TrimSpace(b))
		}
		time.Sleep(100 * time.Microsecond) // polling the process's state: no event tells of it
	}
}
