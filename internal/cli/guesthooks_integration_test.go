package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestGuestHooks runs OCI hooks from hypervisor.guest_hook_path in the guest. The hook
// directory is one the guest has before the container is created: the container's own
// root file system, shared into the guest, at /run/vessel/shared/containers/ID/rootfs. The
// hooks run with the rootfs's busybox (so any guest image does). The prestart hook leaves a
// mark in the guest's /run; the poststart hook, which gets the container's state on stdin,
// writes that mark, its own type, the hostname it sees (the guest's, which the test sets) and
// the state into the container's /dev/shm through /proc/PID/root, where the container reads
// it. The poststop hook writes its state into the root file system when the container is
// deleted, where the host reads it.
func TestGuestHooks(t *testing.T) {
	const id = "hk1"
	guestRootfs := "/run/vessel/shared/containers/" + id + "/rootfs"
	h := newHarnessConfig(t, "guest_hook_path = \""+guestRootfs+"/hooks\"\n")
	h.subreaper()
	// A writable root: the poststop hook leaves its mark there, where the host sees it
	// after the VM is gone.
	b := h.bundle([]string{"sleep", "1000"}, func(s *specs.Spec) { s.Hostname = "guest-" + id; s.Root.Readonly = false })
	shebang := "#!" + guestRootfs + "/bin/busybox sh\n"
	for rel, script := range map[string]string{
		"prestart/10-mark": shebang + "echo \"$1 ran\" > /run/vessel-test-hook-mark\n",
		"poststart/10-report": shebang + `state=$(cat)
pid=${state#*\"pid\":}
pid=${pid%%,*}
echo "$(cat /run/vessel-test-hook-mark), $1 ran on $(hostname): $state" > /proc/$pid/root/dev/shm/guest-hook
`,
		"poststart/20-not-executable": shebang + "exit 1\n",
		"poststop/10-mark":            shebang + "cat > " + guestRootfs + "/poststop-state\n",
	} {
		p := filepath.Join(b, "rootfs", "hooks", rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o755)
		if strings.Contains(rel, "not-executable") {
			mode = 0o644
		}
		if err := os.WriteFile(p, []byte(script), mode); err != nil {
			t.Fatal(err)
		}
	}
	_, remove := h.created(b, id)
	h.ok("start", id)
	got := h.ok("exec", id, "cat", "/dev/shm/guest-hook")
	t.Logf("the hooks' report in the container: %s", got)
	for _, want := range []string{"prestart ran, poststart ran on guest-" + id + ": {", `"id":"` + id + `"`, `"status":"`} {
		if !strings.Contains(got, want) {
			t.Errorf("the hooks' report in the container: %q lacks %q", got, want)
		}
	}

	// Deleting the sandbox's last container has the guest remove it first: the poststop
	// hook runs before the VM stops.
	remove()
	state, err := os.ReadFile(filepath.Join(b, "rootfs", "poststop-state"))
	if err != nil {
		t.Fatalf("the poststop hook left no mark: %v", err)
	}
	if !strings.Contains(string(state), `"id":"`+id+`"`) || !strings.Contains(string(state), `"status":"stopped"`) {
		t.Errorf("the poststop hook's state: %q", state)
	}
}
