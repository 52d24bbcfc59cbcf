//go:build cgo

package taskpid

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// starterEnv makes the test binary a process that starts a stand-in, prints its pid and
// waits to be killed (TestStandInEndsWithItsStarter).
const starterEnv = "TASKPID_TEST_STARTER"

func TestMain(m *testing.M) {
	if os.Getenv(starterEnv) != "" {
		p, err := Start(nil, "starter")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println(p.Pid())
		select {}
	}
	os.Exit(m.Run())
}

func TestStopEndsTheStandIn(t *testing.T) {
	p, err := Start(nil, "ns/ctr", "exec1")
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Kill(p.Pid(), 0); err != nil {
		t.Fatalf("stand-in %d does not exist after Start: %v", p.Pid(), err)
	}
	p.Stop()
	if err := unix.Kill(p.Pid(), 0); !errors.Is(err, unix.ESRCH) {
		t.Errorf("stand-in %d after Stop: kill 0 gave %v, want ESRCH", p.Pid(), err)
	}
	select {
	case <-p.Done():
	default:
		t.Error("Done is open after Stop")
	}
	p.Stop() // again: no effect
}

func TestDoneWhenKilledByOthers(t *testing.T) {
	p, err := Start(nil, "x")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	if err := unix.Kill(p.Pid(), unix.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("Done stayed open after the stand-in was killed")
	}
}

// TestStandInEndsWithItsStarter kills the process that started a stand-in and waits for
// the stand-in to end on its own (its stdin reaches end of file). The test is the
// orphaned stand-in's subreaper, and reaps it.
func TestStandInEndsWithItsStarter(t *testing.T) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0) }()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), starterEnv+"=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Fatalf("pidfd of stand-in %d: %v", pid, err)
	}
	defer unix.Close(fd)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Once the starter is reaped, its children are this process's.
	_ = cmd.Wait()
	// The pidfd becomes readable when the stand-in ends.
	if !pollExit(t, fd, 30*time.Second) {
		_ = unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
		t.Errorf("stand-in %d still runs 30 s after its starter was killed", pid)
	}
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PIDFD, fd, &info, unix.WEXITED, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			t.Fatalf("reap stand-in %d: %v", pid, err)
		}
		break
	}
}

// pollExit waits up to limit for the process of pidfd fd to end and tells whether it did.
func pollExit(t *testing.T, fd int, limit time.Duration) bool {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		left := max(time.Until(deadline), 0)
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, int(left.Milliseconds()))
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			t.Fatal(err)
		}
		return n > 0
	}
}
