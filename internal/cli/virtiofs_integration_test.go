package cli_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/vessel-containers/vessel/internal/shimproto"
	"github.com/vessel-containers/vessel/internal/testutil"
)

// TestVirtioFSThroughTheCLI runs a container with shared_fs = "virtio-fs" from the
// configuration file through the CLI and the shim: its root file system is virtiofs, it
// writes a bind volume the host reads, and then its shim is killed: the VM and virtiofsd
// die with it, and delete removes everything (the harness's cleanup checks that no
// process naming the root, mount or state is left).
func TestVirtioFSThroughTheCLI(t *testing.T) {
	h := newHarnessConfig(t, "shared_fs = \"virtio-fs\"\nvirtio_fs_cache = \"always\"\nvirtio_fs_extra_args = [\"--thread-pool-size=2\"]\n")
	vol := t.TempDir()
	b := h.bundle([]string{"sh", "-c", "grep ' / virtiofs ' /proc/mounts > /vol/rootfs-type; echo ok > /vol/written; exec sleep 1000"}, func(s *specs.Spec) {
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/vol", Type: "bind", Source: vol, Options: []string{"rbind", "rw"}})
	})
	h.ok("run", "--detach", "--bundle", b, "v1")
	testutil.WaitFor(t, "the container to write its volume", func() bool {
		got, err := os.ReadFile(filepath.Join(vol, "written"))
		return err == nil && string(got) == "ok\n"
	})
	if got, _ := os.ReadFile(filepath.Join(vol, "rootfs-type")); !strings.Contains(string(got), "virtiofs") {
		t.Errorf("container root file system: %q, want virtiofs", got)
	}
	daemons, _ := exec.Command("pgrep", "-f", "virtiofsd .*source="+h.root+"/").Output()
	if len(strings.Fields(string(daemons))) != 2 { // the daemon and its file server
		t.Fatalf("virtiofsd processes for the sandbox: %q, want the daemon and its file server", daemons)
	}
	out, err := exec.Command("pgrep", "-f", shimproto.BinaryName+" .*-"+shimproto.FlagSandboxRoot+" "+h.root+"/").Output()
	if err != nil {
		t.Fatalf("no shim found: %v", err)
	}
	for _, f := range strings.Fields(string(out)) {
		if err := syscall.Kill(atoi(t, f), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	testutil.WaitFor(t, "the container to read as stopped", func() bool { return h.state("v1").Status == specs.StateStopped })
	h.ok("delete", "v1")
}
