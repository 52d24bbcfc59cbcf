package sandbox

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestRaiseOOMScore(t *testing.T) {
	child := exec.Command("sleep", "600")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = child.Process.Kill(); _ = child.Wait() }()
	pid := child.Process.Pid
	read := func() string {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/oom_score_adj", pid))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	if err := raiseOOMScore(pid, 300); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != "300" {
		t.Fatalf("oom_score_adj %s after raising to 300", got)
	}
	// Never lowered.
	if err := raiseOOMScore(pid, 100); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != "300" {
		t.Fatalf("oom_score_adj %s after asking for 100, want 300 kept", got)
	}
	if err := raiseOOMScore(1<<22+7, 100); err == nil {
		t.Fatal("no error for a pid that does not exist")
	}
}
