package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vessel-containers/vessel/internal/hypervisor"
)

// The test binary doubles as a fake QEMU: started with QEMU's arguments ("-name
// vessel-fake-<mode> ..."), it serves QMP on fd 3 the way QEMU does, so the process
// management is tested without root, a kernel or QEMU itself. The driver passes QEMU no
// environment, so the mode travels in the VM id.
func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == "-name" && strings.HasPrefix(os.Args[2], "vessel-fake-") {
		os.Exit(fakeQEMU(strings.TrimPrefix(os.Args[2], "vessel-fake-")))
	}
	os.Exit(m.Run())
}

// fakeQEMU serves QMP on the listening socket at fd 3. Modes:
//
//	normal      behaves: stop/cont/query-status/quit
//	ignorequit  answers quit but keeps running (a hung QEMU)
//	crash       exits with status 3 after its second query-status (the first is Start's),
//	            as after a guest panic
//	mute        never accepts the QMP connection
func fakeQEMU(mode string) int {
	l, err := net.FileListener(os.NewFile(3, "qmp"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake qemu:", err)
		return 1
	}
	if mode == "mute" {
		time.Sleep(time.Hour) // killed by the driver
		return 1
	}
	if mode == "handover" {
		return fakeHandover(l) // template_test.go
	}
	conn, err := l.Accept()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake qemu:", err)
		return 1
	}
	send := func(s string) { _, _ = fmt.Fprintf(conn, "%s\r\n", s) }
	event := func(name, data string) {
		send(fmt.Sprintf(`{"timestamp": {"seconds": %d, "microseconds": 0}, "event": %q, "data": %s}`, time.Now().Unix(), name, data))
	}
	send(`{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": "fake"}, "capabilities": ["oob"]}}`)
	status, queries := "running", 0
	dec := json.NewDecoder(bufio.NewReader(conn))
	for {
		var cmd struct {
			Execute string          `json:"execute"`
			ID      json.RawMessage `json:"id"`
		}
		if err := dec.Decode(&cmd); err != nil {
			return 0
		}
		ret := func(v string) { send(`{"return": ` + v + `, "id": ` + string(cmd.ID) + `}`) }
		switch cmd.Execute {
		case "qmp_capabilities":
			ret(`{}`)
		case "query-status":
			ret(fmt.Sprintf(`{"status": %q, "singlestep": false, "running": %v}`, status, status == "running"))
			queries++
			if mode == "crash" && queries == 2 {
				fmt.Fprintln(os.Stderr, "fake qemu: guest crashed")
				event("SHUTDOWN", `{"guest": true, "reason": "guest-panic"}`)
				return 3
			}
		case "stop":
			status = "paused"
			event("STOP", `{}`)
			ret(`{}`)
		case "cont":
			status = "running"
			event("RESUME", `{}`)
			ret(`{}`)
		case "quit":
			if mode == "ignorequit" {
				ret(`{}`)
				continue
			}
			event("SHUTDOWN", `{"guest": false, "reason": "host-qmp-quit"}`)
			ret(`{}`)
			return 0
		default:
			send(`{"error": {"class": "CommandNotFound", "desc": "fake"}, "id": ` + string(cmd.ID) + `}`)
		}
	}
}

// startFake starts a VM whose "QEMU" is this test binary in the given mode.
func startFake(t *testing.T, mode string, ctx context.Context) (*VM, hypervisor.Config, error) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	vm, cfg := newTestVM(t, func(c *hypervisor.Config) {
		c.ID = "fake-" + mode
		c.Path = exe
		c.Accelerator = hypervisor.AccelTCG
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
	vm, cfg, err := startFake(t, "normal", ctx)
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
	vm, cfg, err := startFake(t, "ignorequit", fakeCtx(t))
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
	vm, cfg, err := startFake(t, "crash", fakeCtx(t))
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
	vm, cfg, err := startFake(t, "mute", ctx)
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
