package jail

import (
	"os/exec"
	"runtime"
	"syscall"
	"testing"
)

// A child started pinned with Pdeathsig outlives goroutines that lock their thread and
// exit (each such exit ends its thread); released after it exits, the pinned goroutine ends.
func TestStartPinnedSurvivesThreadExits(t *testing.T) {
	cmd := exec.Command("sleep", "600")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	release, err := StartPinned(cmd)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); release() }()
	for range 64 {
		done := make(chan struct{})
		go func() {
			runtime.LockOSThread() // never unlocked: the runtime ends this thread
			close(done)
		}()
		<-done
	}
	// Signal 0: the child still exists (it would be a zombie, still signalable, only after
	// it was killed; Wait below tells).
	if err := cmd.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("child gone after thread exits: %v", err)
	}
	_ = cmd.Process.Kill()
	st, _ := cmd.Process.Wait()
	if ws, ok := st.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child ended with %v", st)
	}
}

func TestStartPinnedFailure(t *testing.T) {
	if _, err := StartPinned(exec.Command("/nonexistent/binary")); err == nil {
		t.Fatal("no error starting a missing binary")
	}
}
