package qemu

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/hypervisor/hvtest"
	"github.com/vessel-containers/vessel/internal/testutil"
)

func TestConformance(t *testing.T) {
	hvtest.Run(t, "qemu")
	assertNoDriverGoroutines(t)
}

// assertNoDriverGoroutines checks that every goroutine the driver and its QMP client
// started has returned. Goroutines finish right after Done closes, so poll briefly.
func assertNoDriverGoroutines(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		var leaked []string
		for _, g := range strings.Split(stacks, "\n\n") {
			if strings.Contains(g, "internal/hypervisor/qemu.(*VM)") || strings.Contains(g, "qemu/qmp.(*Client)") {
				leaked = append(leaked, g)
			}
		}
		if len(leaked) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("driver goroutines still running:\n%s", strings.Join(leaked, "\n\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRegistered(t *testing.T) {
	dir := t.TempDir()
	vm, err := hypervisor.New("qemu", hypervisor.Config{ID: "x", StateDir: dir, Kernel: "/k", VCPUs: 1, MemoryMiB: 128})
	if err != nil {
		t.Fatalf("hypervisor.New(qemu): %v", err)
	}
	if got := vm.Agent(); got.Kind != "serial" || got.Path != filepath.Join(dir, "agent.sock") {
		t.Errorf("agent address: got %+v", got)
	}
	caps, err := hypervisor.CapabilitiesOf("qemu")
	if err != nil {
		t.Fatal(err)
	}
	if !caps.Templating || !caps.HasSharedFS(hypervisor.SharedFS9P) || !caps.HasSharedFS(hypervisor.SharedFSVirtioFS) {
		t.Errorf("capabilities: got %+v, want templating, 9p and virtio-fs", caps)
	}
}

// newTestVM returns an unstarted VM whose files all exist unless a test removes them.
func newTestVM(t *testing.T, mod func(c *hypervisor.Config)) (*VM, hypervisor.Config) {
	t.Helper()
	dir := t.TempDir()
	write := func(name string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("x"), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := hypervisor.Config{
		ID: "t", StateDir: state, VCPUs: 1, MemoryMiB: 128,
		Path:   write("qemu", 0o755),
		Kernel: write("vmlinux", 0o644),
		Initrd: write("initrd", 0o644),
	}
	if mod != nil {
		mod(&cfg)
	}
	vm, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return vm.(*VM), cfg
}

func TestStartChecksPathsFirst(t *testing.T) {
	tests := []struct {
		name    string
		mod     func(c *hypervisor.Config)
		path    func(c hypervisor.Config) string
		wantErr error
	}{
		{
			name:    "missing binary",
			mod:     func(c *hypervisor.Config) { c.Path = "/nonexistent/qemu-system-x86_64" },
			path:    func(c hypervisor.Config) string { return c.Path },
			wantErr: fs.ErrNotExist,
		},
		{
			name:    "binary not executable",
			mod:     func(c *hypervisor.Config) { _ = os.Chmod(c.Path, 0o644) },
			path:    func(c hypervisor.Config) string { return c.Path },
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			name:    "missing kernel",
			mod:     func(c *hypervisor.Config) { c.Kernel = "/nonexistent/vmlinux" },
			path:    func(c hypervisor.Config) string { return c.Kernel },
			wantErr: fs.ErrNotExist,
		},
		{
			name:    "missing initrd",
			mod:     func(c *hypervisor.Config) { c.Initrd = "/nonexistent/initrd.img" },
			path:    func(c hypervisor.Config) string { return c.Initrd },
			wantErr: fs.ErrNotExist,
		},
		{
			name: "missing shared dir",
			mod: func(c *hypervisor.Config) {
				c.SharedFS, c.SharedDir, c.ShareTag = hypervisor.SharedFS9P, "/nonexistent/shared", "t"
			},
			path:    func(c hypervisor.Config) string { return c.SharedDir },
			wantErr: fs.ErrNotExist,
		},
		{
			name: "virtiofsd not running",
			mod: func(c *hypervisor.Config) {
				c.SharedFS, c.SharedDir, c.ShareTag = hypervisor.SharedFSVirtioFS, "/srv", "t"
				c.VirtioFSSocket = "/nonexistent/vfs.sock"
			},
			path:    func(c hypervisor.Config) string { return c.VirtioFSSocket },
			wantErr: fs.ErrNotExist,
		},
		{
			name:    "kvm required but unusable",
			mod:     func(c *hypervisor.Config) { c.Accelerator = hypervisor.AccelKVM },
			path:    func(c hypervisor.Config) string { return "kvm" },
			wantErr: hypervisor.ErrNoHardwareVirt,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vm, cfg := newTestVM(t, tt.mod)
			vm.probeKVM = func() error { return hypervisor.ErrNoHardwareVirt }
			err := vm.Start(context.Background())
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Start: got %v, want %v", err, tt.wantErr)
			}
			if p := tt.path(cfg); !strings.Contains(err.Error(), p) {
				t.Errorf("error does not name %s: %v", p, err)
			}
			if vm.Pid() != 0 {
				t.Errorf("pid: got %d, want 0", vm.Pid())
			}
			select {
			case <-vm.Done():
			default:
				t.Error("Done open after a failed start")
			}
			if vm.Err() == nil {
				t.Error("Err nil after a failed start")
			}
			entries, _ := os.ReadDir(cfg.StateDir)
			for _, e := range entries {
				t.Errorf("file left in state dir: %s", e.Name())
			}
		})
	}
}

func TestLifecycleBeforeStart(t *testing.T) {
	vm, _ := newTestVM(t, nil)
	ctx := context.Background()
	for name, op := range map[string]func(context.Context) error{"pause": vm.Pause, "resume": vm.Resume} {
		if err := op(ctx); !errors.Is(err, errdefs.ErrFailedPrecondition) {
			t.Errorf("%s before start: got %v, want ErrFailedPrecondition", name, err)
		}
	}
	if _, err := vm.State(ctx); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("state before start: got %v, want ErrFailedPrecondition", err)
	}
	if vm.Pid() != 0 {
		t.Errorf("pid before start: %d", vm.Pid())
	}
	if err := vm.Stop(ctx); err != nil {
		t.Fatalf("stop before start: %v", err)
	}
	select {
	case <-vm.Done():
	default:
		t.Error("Done open after stopping an unstarted vm")
	}
	if err := vm.Stop(ctx); err != nil {
		t.Errorf("second stop: %v", err)
	}
	if err := vm.Start(ctx); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("start after stop: got %v, want ErrFailedPrecondition", err)
	}
}

// TestKVMProbe reports what auto-detection decides on this host.
func TestKVMProbe(t *testing.T) {
	err := hypervisor.KVMUsable()
	got, _ := resolveAccel(hypervisor.AccelAuto, hypervisor.KVMUsable)
	t.Logf("kvm usable: %v; auto selects %s", err, got)
}

// TestStartFailsFast runs the real QEMU with a kernel it cannot load: Start fails with
// qemu.log quoted, QEMU is reaped and the sockets are gone. It needs QEMU but neither root
// nor a guest image.
func TestStartFailsFast(t *testing.T) {
	testutil.RequiresIntegration(t)
	if _, err := os.Stat(DefaultBinary); err != nil {
		t.Skipf("qemu not installed: %v", err)
	}
	vm, cfg := newTestVM(t, func(c *hypervisor.Config) {
		c.Path = DefaultBinary
		c.Accelerator = hypervisor.AccelTCG
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := vm.Start(ctx)
	if err == nil {
		_ = vm.Stop(ctx)
		t.Fatal("start with a garbage kernel: got nil error")
	}
	if !strings.Contains(err.Error(), "qemu.log") || !strings.Contains(err.Error(), "qemu: ") {
		t.Errorf("error does not quote qemu.log: %v", err)
	}
	t.Logf("start error: %v", err)
	<-vm.Done()
	if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(vm.Pid()))); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("qemu pid %d still exists", vm.Pid())
	}
	for _, name := range []string{qmpSocketName, agentSocketName} {
		if _, err := os.Lstat(filepath.Join(cfg.StateDir, name)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s left behind", name)
		}
	}
}
