package qemu

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/hypervisor/qemu/qemutest"
	"github.com/vessel-containers/vessel/internal/jail"
	"github.com/vessel-containers/vessel/internal/jail/jailtest"
	"github.com/vessel-containers/vessel/internal/procid"
	"github.com/vessel-containers/vessel/internal/testutil"
)

func TestJailSpec(t *testing.T) {
	s := jailSpec("/usr/bin/qemu-system-x86_64", []string{"-name", "vessel-x"}, 3)
	if s.Path != "/usr/bin/qemu-system-x86_64" || s.ExtraFiles != 3 || len(s.Args) != 2 {
		t.Errorf("spec %+v", s)
	}
	// The kept set is exactly what the 9p server with security_model=none needs.
	if got, want := jail.CapMask(s.KeepCaps), jail.CapMask([]jail.Cap{
		jail.CapChown, jail.CapDACOverride, jail.CapFowner, jail.CapFsetid, jail.CapMknod, jail.CapSetfcap,
	}); got != want {
		t.Errorf("kept capabilities %v (%#x), want %#x", s.KeepCaps, got, want)
	}
	for _, c := range []jail.Cap{jail.CapSysAdmin, jail.CapDACReadSearch, jail.CapSetuid, jail.CapSetpcap, jail.CapSysPtrace, jail.CapNetAdmin, jail.CapKill} {
		if jail.CapMask(s.KeepCaps)&jail.CapMask([]jail.Cap{c}) != 0 {
			t.Errorf("%s kept", c)
		}
	}
	limits := map[jail.Resource]uint64{}
	for _, r := range s.Rlimits {
		limits[r.Resource] = r.Value
	}
	if limits[jail.RlimitCore] != 0 || limits[jail.RlimitNofile] != qemuNofile || len(limits) != 3 {
		t.Errorf("rlimits %v: want core 0, nofile %d, msgqueue 0", s.Rlimits, qemuNofile)
	}
}

// TestFakeJailed starts the fake QEMU through the jail entry and checks the process the
// driver tracks: it is the program itself (exec in place, same pid and start time), with
// no_new_privs, the kept capabilities and only the driver's descriptors. The fake
// installs no seccomp filter (QEMU does, from -sandbox: see the integration tests).
func TestFakeJailed(t *testing.T) {
	testutil.RequiresRoot(t)
	// A descriptor this process leaks (not close-on-exec): QEMU must not inherit it.
	leak, err := os.Open("/etc/hostname")
	if err != nil {
		t.Fatal(err)
	}
	defer leak.Close()
	leakFD, err := syscallDupNoCloexec(leak)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(leakFD)
	ctx := fakeCtx(t)
	vm, cfg, err := startFake(t, qemutest.Normal, ctx)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	pid := vm.Pid()
	fds := jailtest.Check(t, pid, jailtest.Want{
		Caps: qemuCaps,
		// The fake is a Go program: its runtime reads the cgroup's CPU quota.
		Dirs:      []string{cfg.StateDir, "/sys/fs/cgroup"},
		Devices:   []string{"/dev/null"},
		SocketDir: cfg.StateDir,
	})
	t.Logf("descriptors: %v", fds)
	for fd, target := range fds {
		if target == "/etc/hostname" {
			t.Errorf("descriptor %d: the test's leaked descriptor reached QEMU", fd)
		}
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	if argv0, _, _ := bytes.Cut(cmdline, []byte{0}); string(argv0) != cfg.Path {
		t.Errorf("pid %d runs %q, want the program %s (exec in place)", pid, argv0, cfg.Path)
	}
	id, err := procid.Of(pid)
	if err != nil {
		t.Fatal(err)
	}
	if !id.Exists() {
		t.Errorf("%s does not name the running program", id)
	}
}

// syscallDupNoCloexec duplicates f's descriptor without close-on-exec, as a library
// that opens files without O_CLOEXEC would leave one.
func syscallDupNoCloexec(f *os.File) (int, error) {
	fd, err := unix.Dup(int(f.Fd()))
	if err != nil {
		return 0, err
	}
	return fd, nil
}

// TestStartWithoutSeccomp starts a "QEMU" that refuses -sandbox the way a QEMU built
// without seccomp does: the start fails and says why.
func TestStartWithoutSeccomp(t *testing.T) {
	script := filepath.Join(t.TempDir(), "qemu")
	body := "#!/bin/sh\necho 'qemu-system-x86_64: -sandbox " + seccompSandbox + ": " + sandboxUnsupportedMsg + "' >&2\nexit 1\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	vm, _ := newTestVM(t, func(c *hypervisor.Config) {
		c.Path = script
		c.Accelerator = hypervisor.AccelTCG
	})
	err := vm.Start(fakeCtx(t))
	if err == nil {
		t.Fatal("start: got nil error")
	}
	if !strings.Contains(err.Error(), "has no seccomp support, which the VMM jail requires") {
		t.Errorf("start error does not name the missing seccomp support: %v", err)
	}
}
