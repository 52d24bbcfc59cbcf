package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/hypervisor/qemu/qemutest"
)

func TestTemplateCommandLine(t *testing.T) {
	for _, tc := range []struct {
		mode     hypervisor.TemplateMode
		ram      string
		incoming bool
	}{
		{hypervisor.TemplateSave, "memory-backend-file,id=vessel-ram,size=256M,mem-path=/tpl/mem,,1,share=on", false},
		{hypervisor.TemplateRestore, "memory-backend-file,id=vessel-ram,size=256M,mem-path=/tpl/mem,,1,share=off", true},
	} {
		cfg := baseConfig()
		cfg.SharedFS, cfg.SharedDir, cfg.ShareTag = hypervisor.SharedFS9P, "/run/vessel/sb1/shared", "vessel-shared"
		cfg.Template = &hypervisor.Template{Mode: tc.mode, MemoryPath: "/tpl/mem,1", StatePath: "/tpl/state"}
		args := commandLine(&cfg, tcgLaunch)
		opts := options(args)
		if got := opts["-machine"]; !slices.Equal(got, []string{"q35,memory-backend=vessel-ram"}) {
			t.Errorf("mode %d: -machine %q", tc.mode, got)
		}
		if got := opts["-object"]; !slices.Contains(got, tc.ram) {
			t.Errorf("mode %d: -object %q, want %q", tc.mode, got, tc.ram)
		}
		// The 9p export is the new VM's own: it is not part of the saved state.
		if got := opts["-fsdev"]; len(got) != 1 || !strings.Contains(got[0], "path=/run/vessel/sb1/shared,") {
			t.Errorf("mode %d: -fsdev %q", tc.mode, got)
		}
		gotIncoming := slices.Equal(args[len(args)-2:], []string{"-incoming", "defer"})
		if gotIncoming != tc.incoming {
			t.Errorf("mode %d: ends with %q, want -incoming defer: %v", tc.mode, args[len(args)-2:], tc.incoming)
		}
	}
	cold := baseConfig()
	if slices.Contains(commandLine(&cold, tcgLaunch), "-incoming") || templateRAM(&cold, false) != "" {
		t.Error("a cold boot has template arguments")
	}
}

func TestCheckTemplate(t *testing.T) {
	dir := t.TempDir()
	mem, state := filepath.Join(dir, "mem"), filepath.Join(dir, "state")
	for _, tc := range []struct {
		name string
		edit func(*hypervisor.Config)
		want error
	}{
		{"save", func(c *hypervisor.Config) {
			c.Template = &hypervisor.Template{Mode: hypervisor.TemplateSave, MemoryPath: mem, StatePath: state}
		}, nil},
		{"restore without files", func(c *hypervisor.Config) {
			c.Template = &hypervisor.Template{Mode: hypervisor.TemplateRestore, MemoryPath: mem, StatePath: state}
		}, os.ErrNotExist},
		{"relative", func(c *hypervisor.Config) {
			c.Template = &hypervisor.Template{Mode: hypervisor.TemplateSave, MemoryPath: "mem", StatePath: state}
		}, errdefs.ErrInvalidArgument},
		{"virtio-fs", func(c *hypervisor.Config) {
			c.SharedFS = hypervisor.SharedFSVirtioFS
			c.Template = &hypervisor.Template{Mode: hypervisor.TemplateSave, MemoryPath: mem, StatePath: state}
		}, errdefs.ErrNotImplemented},
		{"bad mode", func(c *hypervisor.Config) { c.Template = &hypervisor.Template{Mode: 9} }, errdefs.ErrInvalidArgument},
	} {
		cfg := baseConfig()
		tc.edit(&cfg)
		err := checkTemplate(&cfg)
		if (tc.want == nil) != (err == nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestFakeHandover(t *testing.T) {
	ctx := fakeCtx(t)
	giver, cfg, err := startHandoverFake(t, ctx, true)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	pid := giver.Pid()
	ad, err := giver.Detach(ctx)
	if err != nil {
		t.Fatalf("detach: %v", err)
	}
	if ad.Pid != pid || ad.StartTime == 0 {
		t.Errorf("adoption %+v for pid %d", ad, pid)
	}
	if _, err := giver.State(ctx); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("state of a detached vm: %v", err)
	}
	if err := giver.Stop(ctx); err != nil {
		t.Errorf("stop of a detached vm: %v", err)
	}
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("stop of a detached vm killed it: %v", err)
	}

	// The taker moves the files into its own directory, as the factory does.
	takerDir := t.TempDir()
	entries, err := os.ReadDir(cfg.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := os.Rename(filepath.Join(cfg.StateDir, e.Name()), filepath.Join(takerDir, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	bad := cfg
	bad.ID, bad.StateDir, bad.Adopt = "taker", takerDir, &hypervisor.Adoption{Pid: pid, StartTime: ad.StartTime + 1}
	wrong, err := New(bad)
	if err != nil {
		t.Fatal(err)
	}
	if err := wrong.Start(ctx); !errdefs.IsNotFound(err) {
		t.Errorf("adopting with the wrong start time: got %v, want NotFound", err)
	}
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("a refused adoption killed the process: %v", err)
	}

	tcfg := cfg
	tcfg.ID, tcfg.StateDir, tcfg.Adopt, tcfg.Handover = "taker", takerDir, &ad, false
	tcfg.MaxVCPUs, tcfg.MaxMemoryMiB, tcfg.MemorySlots = 2, 512, 2
	v, err := New(tcfg)
	if err != nil {
		t.Fatal(err)
	}
	taker := v.(*VM)
	if err := taker.Start(ctx); err != nil {
		t.Fatalf("adopt: %v", err)
	}
	if taker.Pid() != pid {
		t.Errorf("adopted pid %d, want %d", taker.Pid(), pid)
	}
	if st, err := taker.State(ctx); err != nil || st != hypervisor.StateRunning {
		t.Errorf("adopted state %q, %v", st, err)
	}
	if err := taker.Grow(ctx, 2, 300); err != nil {
		t.Fatalf("grow: %v", err)
	}
	if c, m := taker.Size(); c != 2 || m != 128+256 {
		t.Errorf("size after grow: %d vCPUs, %d MiB; want 2 and 384 (128 MiB steps)", c, m)
	}
	if err := taker.Grow(ctx, 3, 300); !errdefs.IsInvalidArgument(err) {
		t.Errorf("grow past the maximum: %v", err)
	}
	if err := taker.Stop(ctx); err != nil {
		t.Fatalf("stop adopted: %v", err)
	}
	for name, vm := range map[string]*VM{"taker": taker, "giver": giver} {
		select {
		case <-vm.Done():
		case <-ctx.Done():
			t.Fatalf("%s: Done not closed after the adopted vm stopped", name)
		}
		if err := vm.Err(); err != nil {
			t.Errorf("%s: Err after a requested stop: %v", name, err)
		}
	}
	assertStateDirClean(t, takerDir)
}

func TestFakeAdoptedCrash(t *testing.T) {
	ctx := fakeCtx(t)
	giver, cfg, err := startHandoverFake(t, ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	ad, err := giver.Detach(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tcfg := cfg
	tcfg.ID, tcfg.Adopt = "taker", &ad
	v, err := New(tcfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(ad.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-v.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("Done not closed after the adopted vm was killed")
	}
	if err := v.Err(); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("adopted pid %d", ad.Pid)) {
		t.Errorf("Err: %v", err)
	}
}

func TestDetachNeedsHandover(t *testing.T) {
	ctx := fakeCtx(t)
	vm, _, err := startHandoverFake(t, ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vm.Detach(ctx); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("detach without handover: %v", err)
	}
	if err := vm.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestTemplateFakesLeaveNoGoroutines checks that the handover tests left no driver
// goroutine (tests run in source order).
func TestTemplateFakesLeaveNoGoroutines(t *testing.T) {
	assertNoDriverGoroutines(t)
}

// startHandoverFake starts a fake QEMU in handover mode: it serves QMP to one client
// after another.
func startHandoverFake(t *testing.T, ctx context.Context, handover bool) (*VM, hypervisor.Config, error) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	vm, cfg := newTestVM(t, func(c *hypervisor.Config) {
		c.ID, c.Path, c.Accelerator, c.Handover = qemutest.ID(qemutest.Handover, ""), exe, hypervisor.AccelTCG, handover
	})
	t.Cleanup(func() {
		// A detached fake outlives its VM object: end it by pid.
		_ = vm.Stop(context.Background())
		if p := vm.Pid(); p > 0 {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		<-vm.Done()
	})
	return vm, cfg, vm.Start(ctx)
}
