package sandbox

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/vessel-containers/vessel/internal/config"
	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/persist"
)

// crashVM is a recVM whose exit can be made to happen with an error, as a guest crash does.
type crashVM struct {
	recVM
	// mu guards err.
	mu  sync.Mutex
	err error
}

func (v *crashVM) Err() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.err
}

// crash ends the VM with err, as the driver does when QEMU exits without a stop request.
func (v *crashVM) crash(err error) {
	v.mu.Lock()
	v.err = err
	v.mu.Unlock()
	v.stopped = true
	close(v.done)
}

// TestWatchVMRecordsCrash checks that an exit nobody asked for becomes the sandbox's
// failure, persisted with the state stopped, and that Delete still cleans up after it.
func TestWatchVMRecordsCrash(t *testing.T) {
	vm := &crashVM{}
	s, _ := newTestSandbox(t, &vm.recVM)
	s.vm = vm
	s.vmWatch = make(chan struct{})
	go s.watchVM(context.Background(), s.vmWatch)

	crash := fmt.Errorf("qemu sb exited: %w", hypervisor.GuestCrash{Panic: "Attempted to kill init!", AgentExited: true, KernelLines: []string{"Kernel panic - not syncing: Attempted to kill init!"}}.Error())
	vm.crash(crash)
	<-s.vmWatch
	if err := s.Failure(); err != crash { //nolint:errorlint // the very error
		t.Errorf("Failure: got %v, want the VM's error", err)
	}
	st, err := persist.Load(s.dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != string(StateStopped) {
		t.Errorf("persisted state: %q, want stopped", st.State)
	}
	for _, want := range []string{"guest crashed: the agent (PID 1) exited", "--- guest kernel (last 1 lines) ---\nKernel panic"} {
		if !strings.Contains(st.Error, want) {
			t.Errorf("persisted error lacks %q:\n%s", want, st.Error)
		}
	}
	if err := s.Delete(context.Background()); err != nil {
		t.Errorf("delete after the crash: %v", err)
	}
}

// TestWatchVMIgnoresRequestedStop checks that the VM's end during Delete is no failure.
func TestWatchVMIgnoresRequestedStop(t *testing.T) {
	vm := &crashVM{}
	s, _ := newTestSandbox(t, &vm.recVM)
	s.vm = vm
	s.vmWatch = make(chan struct{})
	go s.watchVM(context.Background(), s.vmWatch)
	if err := s.Delete(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.vmWatch:
	default:
		t.Fatal("Delete returned before the VM watcher")
	}
	if err := s.Failure(); err != nil {
		t.Errorf("Failure after Delete: %v, want none", err)
	}
}

// TestDeleteRunsGuestPoststop checks that a sandbox with guest hooks has the guest destroy
// the sandbox before the VM stops (the agent runs the poststop hooks then), and that one
// without asks nothing (TestDeleteAsksNothingOfTheGuest).
func TestDeleteRunsGuestPoststop(t *testing.T) {
	vm := &recVM{}
	s, agent := newTestSandbox(t, vm)
	s.cfg.Effective = config.Default()
	s.cfg.Effective.Hypervisor.GuestHookPath = "/hooks"
	var atStop []string
	vm.atStop = func() { atStop = agent.requests() }
	if err := s.Delete(context.Background()); err != nil {
		t.Fatal(err)
	}
	if want := []string{"DestroySandbox"}; !slices.Equal(atStop, want) {
		t.Errorf("agent requests when the VM stopped: %v, want %v", atStop, want)
	}
}
