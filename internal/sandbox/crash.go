package sandbox

import (
	"context"
	"errors"

	"github.com/containerd/log"

	"github.com/vessel-containers/vessel/internal/hypervisor"
)

// watchVM waits for the VM to stop. An exit nobody asked for (a guest kernel panic, the
// agent's crash, the VMM killed) is the sandbox's failure: it is logged as an error with
// the driver's explanation (for a crash: the panic, and the last kernel lines) and
// persisted in the sandbox's state (persist.Sandbox.Error), with the sandbox stopped. It
// closes done when it returns, which is once the VM is done: Delete stops the VM and then
// waits for it.
func (s *Sandbox) watchVM(ctx context.Context, done chan struct{}) {
	defer close(done)
	<-s.vm.Done()
	err := s.vm.Err()
	if err == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.deleting {
		return
	}
	s.failure = err
	s.state = StateStopped
	entry := log.G(ctx).WithError(err)
	if errors.Is(err, hypervisor.ErrGuestCrashed) {
		entry.Error("sandbox failed: the guest crashed")
	} else {
		entry.Error("sandbox failed: the vm stopped without a stop request")
	}
	if err := s.save(); err != nil {
		log.G(ctx).WithError(err).Warn("persist the sandbox's failure")
	}
}

// Failure is why the sandbox's VM stopped when nobody asked it to; nil while it runs and
// after a requested stop.
func (s *Sandbox) Failure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failure
}

// runGuestPoststop has the guest remove its containers before the VM stops, when the
// sandbox has guest OCI hooks (hypervisor.guest_hook_path): the agent runs their poststop
// hooks as it removes them. Without guest hooks the guest is not asked (stopping the VM
// ends the containers); nor is a guest whose VM is gone. A failure is logged: the VM
// stops anyway.
func (s *Sandbox) runGuestPoststop(ctx context.Context) {
	if s.cfg.Effective == nil || s.cfg.Effective.Hypervisor.GuestHookPath == "" || !s.vmAlive() {
		return
	}
	if err := s.agent.DestroySandbox(ctx); err != nil {
		log.G(ctx).WithError(err).Warn("guest poststop hooks: destroy the sandbox in the guest")
	}
}
