//go:build linux

package reaper

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// subreaper makes the test process the reaper of its descendants' orphans, as PID 1 is of
// the guest's, until the test ends.
func subreaper(t *testing.T) {
	t.Helper()
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Skipf("PR_SET_CHILD_SUBREAPER: %v", err)
	}
	t.Cleanup(func() { _ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0) })
}

// run starts r.Run and stops it at the end of the test.
func run(t *testing.T, r *Reaper) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// state is the /proc state letter of pid, 0 once the pid is gone.
func state(pid int) byte {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0
	}
	s, _, ok := parseStat(b)
	if !ok {
		return 0
	}
	return s
}

// waitState polls until pid's state is want (0: gone), for 10 s at most.
func waitState(t *testing.T, pid int, want byte, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for state(pid) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s: pid %d is in state %q after 10s, want %q", what, pid, state(pid), want)

		}
		time.Sleep(5 * time.Millisecond)
	}
}

// orphan starts a shell that starts `read; exit 4` in the background and exits: the
// background process becomes an orphan of the test process. Closing the returned writer
// makes it exit.
func orphan(t *testing.T, r *Reaper) (pid int, exit *os.File) {
	t.Helper()
	in, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	// fd 3: a shell's background job gets /dev/null as its standard input.
	cmd := exec.Command("sh", "-c", `sh -c 'read line <&3; exit 4' & echo $!`)
	cmd.ExtraFiles = []*os.File{in}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	release := r.Hold()
	err = cmd.Start()
	disown := func() {}
	if err == nil {
		disown = r.Own(cmd.Process.Pid)
	}
	release()
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the orphan's parent: %v", err)
	}
	disown()
	in.Close()
	pid, err = strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatal(err)
	}
	return pid, w
}

func TestReapsOrphans(t *testing.T) {
	subreaper(t)
	r := New("")
	run(t, r)
	pid, exit := orphan(t, r)
	if s := state(pid); s == 0 || s == 'Z' {
		t.Fatalf("the orphan is in state %q before it was told to exit", s)
	}
	exit.Close()
	waitState(t, pid, 0, "orphan")
	if n := r.Reaped(); n != 1 {
		t.Errorf("Reaped = %d, want 1", n)
	}
}

// TestOwnedAndHeld: a zombie child that is owned is left to its owner, whose wait gets its
// exit status; while a hold is taken nothing is reaped, and the release reaps what waited.
func TestOwnedAndHeld(t *testing.T) {
	subreaper(t)
	r := New("")
	run(t, r)

	release := r.Hold()
	cmd := exec.Command("sh", "-c", "exit 7")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	disown := r.Own(cmd.Process.Pid)
	release()
	waitState(t, cmd.Process.Pid, 'Z', "owned child")
	for range 3 {
		if n, err := r.Reap(); n != 0 || err != nil {
			t.Fatalf("Reap with an owned zombie = %d, %v; want 0, nil", n, err)
		}
	}
	var ee *exec.ExitError
	if err := cmd.Wait(); !errors.As(err, &ee) || ee.ExitCode() != 7 {
		t.Fatalf("owner's wait = %v, want exit status 7", err)
	}
	disown()

	// Held: an orphan that exits stays a zombie until the hold is released.
	pid, exit := orphan(t, r)
	hold := r.Hold()
	exit.Close()
	waitState(t, pid, 'Z', "orphan under a hold")
	if n, err := r.Reap(); n != 0 || err != nil {
		t.Fatalf("Reap under a hold = %d, %v; want 0, nil", n, err)
	}
	hold()
	hold() // idempotent
	waitState(t, pid, 0, "orphan after the hold")
	if n := r.Reaped(); n != 1 {
		t.Errorf("Reaped = %d, want 1 (the orphan, not the owned child)", n)
	}
}

func TestParseStat(t *testing.T) {
	tests := []struct {
		in    string
		state byte
		ppid  int
		ok    bool
	}{
		{"42 (sleep) Z 1 42 42 0 -1", 'Z', 1, true},
		{"42 (a) b) (c) S 17 42 42 0 -1", 'S', 17, true},
		{"42 (sleep", 0, 0, false},
		{"42 (x) Z", 0, 0, false},
	}
	for _, tt := range tests {
		state, ppid, ok := parseStat([]byte(tt.in))
		if state != tt.state || ppid != tt.ppid || ok != tt.ok {
			t.Errorf("parseStat(%q) = %q, %d, %v; want %q, %d, %v", tt.in, state, ppid, ok, tt.state, tt.ppid, tt.ok)
		}
	}
	var nilReaper *Reaper
	nilReaper.Hold()()
	nilReaper.Own(1)()
	if nilReaper.Reaped() != 0 {
		t.Error("a nil reaper reaped")
	}
}
