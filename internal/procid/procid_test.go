package procid

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

func TestParseStat(t *testing.T) {
	// The command name may hold spaces and parentheses; utime, stime and starttime are
	// fields 14, 15 and 22.
	line := "42 (qemu (x) y) S 7 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 1000 0 0\n"
	got, err := ParseStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	want := Stat{Pid: 42, Comm: "qemu (x) y", State: 'S', PPid: 7, UTime: 250, STime: 50, StartTime: 1000}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}

	for _, tc := range []struct{ name, line, wantErr string }{
		{"empty", "", "malformed"},
		{"no comm", "42 S 7", "malformed"},
		{"bad pid", "x (a) S 1 1 1 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0 9 0 0", "pid"},
		{"short", "1 (init) S", "want at least 20"},
		{"bad state", "1 (init) SS 0 1 1 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0 9 0 0", "state"},
		{"bad start time", "1 (init) S 0 1 1 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0 x 0 0", "field 22"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseStat([]byte(tc.line))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("got %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestSelf(t *testing.T) {
	self, err := Self()
	if err != nil {
		t.Fatal(err)
	}
	if self.Pid != os.Getpid() || self.StartTime == 0 {
		t.Fatalf("got %+v, want pid %d and a start time", self, os.Getpid())
	}
	if !self.Exists() || !self.Alive() {
		t.Errorf("this process: Exists %v, Alive %v; want both true", self.Exists(), self.Alive())
	}
	other := ID{Pid: self.Pid, StartTime: self.StartTime + 1}
	if other.Exists() || other.Alive() {
		t.Error("a different start time on this pid counts as this process")
	}
	if err := other.Signal(0); !errdefs.IsNotFound(err) {
		t.Errorf("signal to a pid that names another process: got %v, want not found", err)
	}
	if _, err := Of(-1); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Of(-1): got %v, want invalid argument", err)
	}
}

func TestSignalWait(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Skipf("sleep: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	id, err := Of(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if id.Wait(50 * time.Millisecond) {
		t.Fatal("Wait on a running process: got true")
	}
	if err := id.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if !id.Wait(10 * time.Second) {
		t.Fatal("Wait after SIGKILL: got false")
	}
	// A zombie exists but is not alive.
	if !id.Exists() || id.Alive() {
		t.Errorf("zombie: Exists %v, Alive %v; want true, false", id.Exists(), id.Alive())
	}
	_ = cmd.Wait()
	if id.Exists() {
		t.Error("reaped process still exists")
	}
	if err := id.Signal(syscall.SIGKILL); !errdefs.IsNotFound(err) {
		t.Errorf("signal to a reaped process: got %v, want not found", err)
	}
	if !id.Wait(time.Second) {
		t.Error("Wait on a reaped process: got false")
	}
}
