package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/hypervisor/qemu/qemutest"
	"github.com/vessel-containers/vessel/internal/jail"
)

// The test binary doubles as the jail entry that starts QEMU and as a fake QEMU (see
// qemutest), so the process management is tested without root, a kernel or QEMU itself.
func TestMain(m *testing.M) {
	jail.Main()
	qemutest.Main()
	os.Exit(m.Run())
}

// startFake starts a VM whose "QEMU" is this test binary in the given mode.
func startFake(t *testing.T, mode qemutest.Mode, ctx context.Context) (*VM, hypervisor.Config, error) {
	t.Helper()
	return startFakeWith(t, mode, "", ctx, nil)
}

// startFakeWith is startFake for a VM named name (qemutest.ID) whose configuration edit,
// when not nil, changes; the VM is stopped at the end of the test.
func startFakeWith(t *testing.T, mode qemutest.Mode, name string, ctx context.Context, edit func(*hypervisor.Config)) (*VM, hypervisor.Config, error) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	vm, cfg := newTestVM(t, func(c *hypervisor.Config) {
		c.ID = qemutest.ID(mode, name)
		c.Path = exe
		c.Accelerator = hypervisor.AccelTCG
		if edit != nil {
			edit(c)
		}
	})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = vm.Stop(ctx)
	})
	return vm, cfg, vm.Start(ctx)
}

func fakeCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestFakeLifecycle(t *testing.T) {
	ctx := fakeCtx(t)
	vm, cfg, err := startFake(t, qemutest.Normal, ctx)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	for _, step := range []struct {
		name string
		op   func(context.Context) error
		want hypervisor.State
	}{
		{"start", nil, hypervisor.StateRunning},
		{"pause", vm.Pause, hypervisor.StatePaused},
		{"resume", vm.Resume, hypervisor.StateRunning},
	} {
		if step.op != nil {
			if err := step.op(ctx); err != nil {
				t.Fatalf("%s: %v", step.name, err)
			}
		}
		if got, err := vm.State(ctx); err != nil || got != step.want {
			t.Fatalf("state after %s: got %q, %v; want %q", step.name, got, err, step.want)
		}
	}
	if err := vm.Resume(ctx); err == nil {
		t.Error("resume of a running vm: got nil error")
	}
	if err := vm.Start(ctx); err == nil {
		t.Error("second start: got nil error")
	}
	if err := vm.Stop(ctx); err != nil {
		t.Fatalf("stop: %v", err)
	}
	<-vm.Done()
	if err := vm.Err(); err != nil {
		t.Errorf("Err after stop: %v", err)
	}
	assertStateDirClean(t, cfg.StateDir)
}

func TestFakeStopKillsHungQEMU(t *testing.T) {
	vm, cfg, err := startFake(t, qemutest.IgnoreQuit, fakeCtx(t))
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	begin := time.Now()
	if err := vm.Stop(ctx); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if took := time.Since(begin); took > 5*time.Second {
		t.Errorf("stop took %v", took)
	}
	if err := vm.Err(); err != nil {
		t.Errorf("Err after a stop that had to kill: got %v, want nil", err)
	}
	assertStateDirClean(t, cfg.StateDir)
}

func TestFakeUnexpectedExit(t *testing.T) {
	vm, cfg, err := startFake(t, qemutest.Crash, fakeCtx(t))
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	_, _ = vm.State(fakeCtx(t)) // makes the fake crash; racing its exit, any answer is fine
	select {
	case <-vm.Done():
	case <-fakeCtx(t).Done():
		t.Fatal("Done not closed after the fake exited")
	}
	err = vm.Err()
	for _, want := range []string{"exit status 3", `"guest-panic"`, "fake qemu: guest crashed", "qemu.log"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Err: got %v, want it to mention %s", err, want)
		}
	}
	if st, err := vm.State(fakeCtx(t)); err != nil || st != hypervisor.StateShutdown {
		t.Errorf("state after exit: got %q, %v", st, err)
	}
	if err := vm.Pause(fakeCtx(t)); err == nil {
		t.Error("pause after exit: got nil error")
	}
	if err := vm.Stop(fakeCtx(t)); err != nil {
		t.Errorf("stop after exit: %v", err)
	}
	if vm.Err() == nil {
		t.Error("Stop after an unexpected exit cleared Err")
	}
	assertStateDirClean(t, cfg.StateDir)
}

func TestFakeStartTimeout(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	vm, cfg, err := startFake(t, qemutest.Mute, ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("start: got %v, want DeadlineExceeded", err)
	}
	if !strings.Contains(err.Error(), "signal: killed") {
		t.Errorf("start error does not say QEMU was killed: %v", err)
	}
	select {
	case <-vm.Done():
	default:
		t.Error("Done open after a failed start")
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", vm.Pid())); err == nil {
		t.Errorf("pid %d still exists", vm.Pid())
	}
	assertStateDirClean(t, cfg.StateDir)
}

// assertStateDirClean checks that only the logs remain.
func assertStateDirClean(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != qemuLogName && e.Name() != hypervisor.ConsoleLogName {
			t.Errorf("left in state dir: %s", e.Name())
		}
	}
}

// TestFakesLeaveNoGoroutines runs after the tests above (tests run in source order) and
// checks that their VMs left no driver goroutine behind.
func TestFakesLeaveNoGoroutines(t *testing.T) {
	assertNoDriverGoroutines(t)
}
