package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/procid"
)

// Handing a running QEMU from one process (the VM cache) to another (a shim):
//
//   - The giver started QEMU with Config.Handover (no parent-death signal). Detach closes
//     its QMP and console connections (QEMU's sockets serve one client at a time) and
//     console.log, and leaves the process alone; the giver still reaps it if it is its
//     child.
//   - The taker moves the VM's files (sockets, logs) into its own state directory (a
//     rename keeps the listening sockets working) and starts a VM with Config.Adopt. Start
//     opens a pidfd, checks the start time, connects to the console (going on with
//     console.log) and to QMP, and watches the pidfd: QEMU is not its child, so there is
//     no exit status, only the fact that it exited. Console output between the two
//     connections is dropped by QEMU.

// Detach hands the VMM over: see hypervisor.Detacher.
func (v *VM) Detach(ctx context.Context) (hypervisor.Adoption, error) {
	if !v.cfg.Handover {
		return hypervisor.Adoption{}, fmt.Errorf("qemu %s: detach: vm was not started for a handover: %w", v.cfg.ID, errdefs.ErrFailedPrecondition)
	}
	v.opMu.Lock()
	defer v.opMu.Unlock()
	c, err := v.running("detach", phaseRunning, phasePaused)
	if err != nil {
		return hypervisor.Adoption{}, err
	}
	pid := v.Pid()
	id, err := procid.Of(pid)
	if err != nil {
		return hypervisor.Adoption{}, fmt.Errorf("qemu %s: detach: %w", v.cfg.ID, err)
	}
	v.mu.Lock()
	eventsDone := v.eventsDone
	// From here the exit is the new owner's business, not an error of this VM.
	v.stopRequested = true
	v.phase = phaseDetached
	v.client = nil
	v.mu.Unlock()
	if err := c.Close(); err != nil {
		log.G(ctx).WithError(err).Debug("close qmp connection of a detached vm")
	}
	<-eventsDone
	// The new owner reads the console from here; console.log is closed before it moves.
	v.stopConsole(0)
	return hypervisor.Adoption{Pid: id.Pid, StartTime: id.StartTime}, nil
}

// adopt attaches to the running QEMU named by Config.Adopt, whose sockets are already in
// Config.StateDir.
func (v *VM) adopt(ctx context.Context) error {
	logger := log.G(ctx).WithField("vm", v.cfg.ID)
	a := v.cfg.Adopt
	pidfd, err := unix.PidfdOpen(a.Pid, 0)
	if err != nil {
		return v.failBeforeExec(fmt.Errorf("adopt pid %d: %w", a.Pid, err))
	}
	// The pidfd pins the process: check after opening it that it is the one handed over.
	if want := (procid.ID{Pid: a.Pid, StartTime: a.StartTime}); !want.Exists() {
		_ = unix.Close(pidfd)
		return v.failBeforeExec(fmt.Errorf("adopt %s: not the vmm handed over (it exited or its pid was reused): %w",
			want, errdefs.ErrNotFound))
	}
	proc, err := os.FindProcess(a.Pid) // signals through a pidfd of its own on Linux
	if err != nil {
		_ = unix.Close(pidfd)
		return v.failBeforeExec(fmt.Errorf("adopt pid %d: %w", a.Pid, err))
	}

	exited := make(chan struct{})
	started := make(chan struct{})
	v.mu.Lock()
	// Not started by this process: only Pid and kill use cmd (it is never waited for).
	v.cmd, v.exited = &exec.Cmd{Process: proc}, exited
	v.mu.Unlock()
	go v.watchAdopted(pidfd, exited, started, logger)

	if err := v.startConsole(logger); err != nil {
		return v.failAfterExec(err, started)
	}
	if err := v.connect(ctx, exited, started, false, logger); err != nil {
		return err
	}
	logger.WithField("pid", a.Pid).Info("qemu adopted")
	return nil
}

// watchAdopted owns pidfd. It waits until the adopted QEMU exits, then does what wait
// does for a child: lets Start finish, drains QMP, removes the sockets, records why and
// closes done.
func (v *VM) watchAdopted(pidfd int, exited, started chan struct{}, logger *log.Entry) {
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	for {
		if _, err := unix.Poll(fds, -1); err == nil || !errors.Is(err, unix.EINTR) {
			break // readable: exited; any other error cannot be waited out either
		}
	}
	_ = unix.Close(pidfd)
	stopRequested, reason, startErr := v.afterExit(exited, started, logger)
	var err error
	switch {
	case startErr != nil:
		err = fmt.Errorf("adopted qemu (pid %d) is unusable: %w%s", v.cfg.Adopt.Pid, startErr, v.logTails())
	case !stopRequested:
		if reason != "" {
			reason = fmt.Sprintf(" (guest shutdown reason %q)", reason)
		}
		err = fmt.Errorf("qemu %s (adopted pid %d) exited without a stop request%s%s", v.cfg.ID, v.cfg.Adopt.Pid, reason, v.logTails())
	}
	v.mu.Lock()
	v.exitErr = err
	v.phase = phaseStopped
	v.mu.Unlock()
	entry := logger.WithField("pid", v.cfg.Adopt.Pid)
	if err != nil && startErr == nil {
		entry.WithError(err).Warn("adopted qemu exited unexpectedly")
	} else {
		entry.Debug("adopted qemu exited")
	}
	close(v.done)
}

// handoverAttr lets a VMM started for a handover outlive this process: no parent-death
// signal, and its own process group so that a terminal's ^C to the factory does not
// reach VMs that sandboxes already own.
func handoverAttr(cfg *hypervisor.Config, attr *syscall.SysProcAttr) {
	if cfg.Handover {
		attr.Pdeathsig = 0
		attr.Setpgid = true
	}
}
