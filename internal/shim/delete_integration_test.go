package shim_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDeleteTeardown checks both ways a container is deleted: a pod member while the pod
// runs on (the guest removes it), and the last container, whose VM is stopped without the
// guest tidying up first (exit status, output and written files must all survive that).
func TestDeleteTeardown(t *testing.T) {
	h := newHarness(t)
	t.Run("pod member", func(t *testing.T) {
		pod := []string{"--annotation", "io.kubernetes.cri.container-type=sandbox", "--annotation", "io.kubernetes.cri.sandbox-id=pod2"}
		h.start("pod2", pod, "sleep", "1000")
		member := []string{"--annotation", "io.kubernetes.cri.container-type=container", "--annotation", "io.kubernetes.cri.sandbox-id=pod2"}
		h.start("member", member, "sleep", "2000")
		h.remove("member")
		// The guest refuses an id it still holds: creating the member again proves the
		// guest removed it, in the same VM.
		h.start("member", member, "sleep", "2000")
		if out := h.ctr("task", "exec", "--exec-id", "look", "member", "echo", "back"); out != "back\n" {
			t.Errorf("exec in the re-created member: %q", out)
		}
		if pid := h.shimPid("member"); pid != h.shimPid("pod2") {
			t.Errorf("re-created member runs in shim %d, the pod in %d", pid, h.shimPid("pod2"))
		}
		h.remove("member")
		h.remove("pod2") // the last container: it ends the VM
		h.assertNoLeftovers()
	})
	t.Run("last container", func(t *testing.T) {
		data := t.TempDir()
		mount := []string{"--mount", "type=bind,src=" + data + ",dst=/data,options=rbind:rw"}
		out, code := h.runFlags(mount, "last", "sh", "-c", "echo written > /data/f; echo out; exit 7")
		if code != 7 || out != "out\n" {
			t.Errorf("ctr run: got %q exit %d, want \"out\\n\" exit 7", out, code)
		}
		got, err := os.ReadFile(filepath.Join(data, "f"))
		if err != nil || strings.TrimSpace(string(got)) != "written" {
			t.Errorf("file written by the container: %q %v", got, err)
		}
		h.assertNoLeftovers()
	})
}

// TestKillThenDelete: once a kill ended the task's process, the task is stopped and can be
// deleted at once; a kill of the deleted task is NotFound.
func TestKillThenDelete(t *testing.T) {
	h := newHarness(t)
	events := h.ctd.Events(t)
	h.start("k", nil, "sleep", "1000")
	waitEvent(t, events, "/tasks/start", `"k"`)
	h.ctr("task", "kill", "-s", "SIGKILL", "k")
	start := time.Now()
	waitEvent(t, events, "/tasks/exit", `"k"`, `"exit_status":137`)
	if st := h.taskStatus("k"); st != "STOPPED" {
		t.Errorf("status after the exit event: %q, want STOPPED", st)
	}
	h.ctr("task", "delete", "k")
	t.Logf("deleted %v after kill", time.Since(start))
	ctx, cancel := h.ctx()
	defer cancel()
	if out, err := h.ctd.Ctr(ctx, "task", "kill", "-s", "SIGKILL", "k"); err == nil || !strings.Contains(out, "not found") {
		t.Errorf("kill of the deleted task: %v: %s", err, out)
	}
}
