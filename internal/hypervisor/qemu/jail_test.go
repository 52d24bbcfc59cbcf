package qemu

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/hypervisor/qemu/qemutest"
	"github.com/vessel-containers/vessel/internal/idrange"
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

// TestFakeJailedUserNS starts the fake QEMU on unprivileged ids of its own, in its
// minimal root, with the fake itself, the kernel, the initrd, the state directory and
// the 9p export all below directories those ids cannot search (0700, host root's): the
// driver passes the root's paths as clones, so the VMM starts, its root holds the kernel
// and the export, it holds none of the clones' descriptors, and no directory's mode
// changed.
func TestFakeJailedUserNS(t *testing.T) {
	testutil.RequiresRoot(t)
	ids := idrange.Range{Start: 2000220000, Size: idrange.Size}
	closed := t.TempDir()
	if err := os.Chmod(closed, 0o700); err != nil {
		t.Fatal(err)
	}
	shared := filepath.Join(closed, "shared")
	if err := os.Mkdir(shared, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(shared, int(ids.HostID(0)), int(ids.HostID(0))); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	vm, cfg := newTestVM(t, func(c *hypervisor.Config) {
		c.ID = qemutest.ID(qemutest.Normal, "userns")
		c.Path = exe
		c.Accelerator = hypervisor.AccelTCG
		c.UserNS = &ids
		c.SharedFS, c.SharedDir, c.ShareTag = hypervisor.SharedFS9P, shared, "t"
	})
	modes := map[string]os.FileMode{}
	for _, p := range []string{closed, filepath.Dir(cfg.Kernel), cfg.StateDir, shared, filepath.Dir(exe)} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		modes[p] = st.Mode()
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = vm.Stop(ctx)
	})
	if err := vm.Start(fakeCtx(t)); err != nil {
		t.Fatalf("start: %v", err)
	}
	pid := vm.Pid()
	fds := jailtest.Check(t, pid, jailtest.Want{
		Caps:      qemuUserNSCaps,
		Dirs:      []string{cfg.StateDir},
		Devices:   []string{"/dev/null"},
		SocketDir: cfg.StateDir,
	})
	t.Logf("descriptors: %v", fds)
	root := "/proc/" + strconv.Itoa(pid) + "/root"
	for _, p := range []string{cfg.Kernel, cfg.Initrd, shared, exe} {
		if _, err := os.Stat(root + p); err != nil {
			t.Errorf("%s is not in the VMM's root: %v", p, err)
		}
	}
	if _, err := os.Stat(root + filepath.Join(cfg.StateDir, qemuLogName)); !os.IsNotExist(err) {
		t.Errorf("the state directory's files are in the VMM's root (%v), want them absent", err)
	}
	for p, mode := range modes {
		if st, err := os.Stat(p); err != nil || st.Mode() != mode {
			t.Errorf("%s: mode %v (%v) after the start, want %v", p, st.Mode(), err, mode)
		}
	}
}
