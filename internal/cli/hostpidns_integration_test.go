package cli_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/vessel-containers/vessel/internal/testutil"
)

// TestProcBindWithoutPidNamespace runs runc's bats test start_hello.bats "runc run
// [rootless with host pidns]" in a VM: a terminal container without a pid namespace of its
// own, whose /proc is a bind of /proc. The container's kernel is the guest's, so /proc is
// the guest's procfs (the host's is not shared with the VM), and the console, bound from
// the container's devpts onto /dev/console through that procfs, is set up.
func TestProcBindWithoutPidNamespace(t *testing.T) {
	h := newHarness(t)
	h.subreaper()
	b := h.bundle([]string{"sh", "-c", `tty; grep " /proc " /proc/self/mountinfo; exit 7`}, func(s *specs.Spec) {
		s.Process.Terminal = true
		s.Linux.Namespaces = slices.DeleteFunc(s.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == specs.PIDNamespace })
		for i, m := range s.Mounts {
			if m.Type == "proc" {
				s.Mounts[i] = specs.Mount{Destination: m.Destination, Type: "none", Source: "/proc", Options: []string{"rbind", "nosuid", "nodev", "noexec"}}
			}
		}
	})
	sock := filepath.Join(t.TempDir(), "console.sock")
	masters := testutil.ListenConsole(t, sock)
	pidFile := filepath.Join(t.TempDir(), "pid")
	if _, errOut, code := h.run("create", "--bundle", b, "--console-socket", sock, "--pid-file", pidFile, "hp1"); code != 0 {
		t.Fatalf("create: exit %d: %s", code, errOut)
	}
	var master *os.File
	select {
	case master = <-masters:
	case <-time.After(time.Minute):
		t.Fatal("no pty master on the console socket")
	}
	defer master.Close()
	var out syncBuffer
	read := make(chan struct{})
	go func() {
		defer close(read)
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			_, _ = out.Write(buf[:n]) // a syncBuffer write cannot fail
			if err != nil {
				return
			}
		}
	}()
	h.ok("start", "hp1")
	if code := reap(t, readPid(t, pidFile)); code != 7 {
		t.Errorf("exit status %d, want 7", code)
	}
	testutil.WaitFor(t, "the mount line", func() bool { return strings.Contains(out.String(), " /proc ") })
	got := out.String()
	if !strings.Contains(got, "/dev/pts/") {
		t.Errorf("output %q: the process's tty is not a pts", got)
	}
	if !strings.Contains(got, " - proc ") {
		t.Errorf("output %q: /proc is not the guest's procfs", got)
	}
	h.ok("delete", "hp1")
	master.Close()
	<-read
	h.assertNoLeftovers()
}
