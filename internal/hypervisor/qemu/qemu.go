// Package qemu is the QEMU hypervisor driver: it builds QEMU's command line from a
// hypervisor.Config, starts and supervises one QEMU process per VM, and controls it over
// QMP (package qmp).
//
// Layout of Config.StateDir while a VM runs:
//
//	qmp.sock      QMP control socket (created by the driver, listened on by QEMU)
//	agent.sock    the vessel.agent virtio-serial port (see VM.Agent)
//	console.sock  guest serial console (ttyS0), read by the driver (console.go)
//	console.log   the end of the guest console, at most hypervisor.MaxConsoleLog bytes
//	qemu.log      QEMU's stdout and stderr
//
// The sockets are created with mode 0600 and removed when QEMU exits; the logs stay for
// the caller to read or remove with the directory.
//
// VM templates, handing a running QEMU to another process and growing a VM (CPU and
// memory hotplug) are in template*.go. QEMU runs confined (jail.go): few capabilities,
// no_new_privs, resource limits, only its own descriptors, and its seccomp sandbox. Disks
// are hot-plugged into a PCI bridge or onto a virtio-scsi controller (disk.go), NICs into
// the same bridge (nic.go). Not
// supported yet: vsock, snapshots of a running sandbox, and running QEMU as a non-root
// user in its own namespaces and root.
package qemu

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/hypervisor/qemu/qmp"
)

func init() {
	hypervisor.Register("qemu", hypervisor.Driver{New: New, Capabilities: capabilities, CheckJail: checkJail,
		CheckUnprivilegedTemplates: checkUnprivilegedTemplates})
}

// capabilities is what the driver implements: VM templates, handover and CPU and memory
// growth (template*.go), disk and NIC hotplug (disk.go, nic.go) and both shared file systems; no jailer.
var capabilities = hypervisor.Capabilities{
	Templating:   true,
	CPUHotplug:   true,
	MemHotplug:   true,
	BlockHotplug: true,
	NICHotplug:   true,
	SharedFS:     []hypervisor.SharedFS{hypervisor.SharedFS9P, hypervisor.SharedFSVirtioFS},
}

// reapTimeout bounds the wait for the kernel to reap QEMU after SIGKILL. Reaching it means
// the process is stuck in the kernel (uninterruptible sleep).
const reapTimeout = 10 * time.Second

// phase is the driver's lifecycle: created → running ⇄ paused → stopped. A VM is used
// once: a stopped VM cannot start again.
type phase int

const (
	phaseCreated phase = iota
	phaseStarting
	phaseRunning
	phasePaused
	phaseStopped
	// phaseDetached: the VMM was handed to another process (Detach); only reaped here.
	phaseDetached
)

func (p phase) String() string {
	return [...]string{"created", "starting", "running", "paused", "stopped", "detached"}[p]
}

// VM is one QEMU virtual machine. Its methods are safe for concurrent use.
type VM struct {
	cfg    hypervisor.Config
	binary string
	// probeKVM tells whether KVM can run guests here (hypervisor.KVMUsable; tests replace it).
	probeKVM func() error
	// done is closed once QEMU has been reaped and the driver's goroutines have returned
	// (or when a VM that never started is stopped).
	done chan struct{}

	// opMu serializes Start, Stop, Pause and Resume: each is one lifecycle transition.
	opMu sync.Mutex

	// console is what the guest wrote to its serial console (it has its own lock).
	console *consoleLog

	// mu guards phase, cmd, exited, client, eventsDone, consoleReader, stopRequested,
	// startErr, exitErr and shutdownReason.
	mu    sync.Mutex
	phase phase
	// cmd is the QEMU process; nil before Start.
	cmd *exec.Cmd
	// exited is closed as soon as cmd.Wait returns; set with cmd.
	exited chan struct{}
	// client is the QMP connection; nil until Start has connected it.
	client *qmp.Client
	// eventsDone is closed when consumeEvents returns; set with client.
	eventsDone chan struct{}
	// consoleReader is the running console reader; nil before Start and once stopped.
	consoleReader *consoleReader
	// startErr is set when Start fails after QEMU was started.
	startErr error
	// stopRequested is set by Stop: the exit that follows is not an error.
	stopRequested bool
	// exitErr is what Err returns once done is closed.
	exitErr error
	// shutdownReason is the reason of QEMU's last SHUTDOWN event ("guest-shutdown",
	// "guest-panic", "host-qmp-quit", ...).
	shutdownReason string
	// hot counts what Grow hot-plugged (template_resize.go); guarded by mu.
	hot hotplugged
	// accel is the accelerator QEMU was started with, empty for a VM this process did not
	// start (cpu_shrink.go); guarded by mu.
	accel hypervisor.Accelerator
	// devEvents routes device events to their waiters (devevents.go).
	devEvents deviceEvents
	// disk is the attached disks (disk.go); guarded by mu.
	disk diskState
	// nic is the attached NICs (nic.go); guarded by mu.
	nic nicState
}

var (
	_ hypervisor.VM            = (*VM)(nil)
	_ hypervisor.ConsoleTailer = (*VM)(nil)
	_ hypervisor.TemplateSaver = (*VM)(nil)
	_ hypervisor.Detacher      = (*VM)(nil)
	_ hypervisor.Resizer       = (*VM)(nil)
	_ hypervisor.NICHotplugger = (*VM)(nil)
)

// New returns an unstarted VM for cfg. It validates cfg but checks no files: Start does.
func New(cfg hypervisor.Config) (hypervisor.VM, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("qemu: %w", err)
	}
	if isMicroVM(&cfg) {
		if err := microvmRefusal(&cfg); err != nil {
			return nil, err
		}
	}
	cfg.KernelParams = slices.Clone(cfg.KernelParams)
	binary := cfg.Path
	if binary == "" {
		binary = DefaultBinary
	}
	if len(cfg.NICs) > lastDiskSlot-firstDiskSlot+1 {
		return nil, fmt.Errorf("qemu: %d nics: at most %d fit the pci bridge: %w", len(cfg.NICs), lastDiskSlot-firstDiskSlot+1, errdefs.ErrInvalidArgument)
	}
	return &VM{
		nic:      coldNICs(&cfg),
		cfg:      cfg,
		binary:   binary,
		probeKVM: hypervisor.KVMUsable,
		done:     make(chan struct{}),
		console:  newConsoleLog(),
	}, nil
}

func (v *VM) statePath(name string) string { return filepath.Join(v.cfg.StateDir, name) }

// Agent is the unix socket connected to the guest's vessel.agent virtio-serial port. It
// exists as soon as Start returns; dial it right away: bytes written before the agent
// opens the port are kept by QEMU and delivered. Only one host connection is served at a
// time; after it closes, QEMU accepts the next one.
func (v *VM) Agent() hypervisor.AgentAddress {
	return hypervisor.AgentAddress{Kind: "serial", Path: v.statePath(agentSocketName)}
}

// Pid is QEMU's process id, 0 before Start. It stays set after QEMU exits.
func (v *VM) Pid() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.cmd == nil || v.cmd.Process == nil {
		return 0
	}
	return v.cmd.Process.Pid
}

// Done is closed when QEMU has exited and been reaped.
func (v *VM) Done() <-chan struct{} { return v.done }

// Err is nil while QEMU runs and after an exit Stop asked for; otherwise it describes the
// exit (status or signal, the guest's shutdown reason, and the tails of the guest console
// and qemu.log, escaped and bounded).
func (v *VM) Err() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.exitErr
}

// running returns the QMP client of a started VM whose QEMU has not exited, or an error
// wrapping errdefs.ErrFailedPrecondition.
func (v *VM) running(op string, want ...phase) (*qmp.Client, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !slices.Contains(want, v.phase) || v.client == nil {
		return nil, fmt.Errorf("qemu %s: %s: vm is %s: %w", v.cfg.ID, op, v.phase, errdefs.ErrFailedPrecondition)
	}
	return v.client, nil
}

// setPhase records a transition unless QEMU exited meanwhile (the waiter then set stopped).
func (v *VM) setPhase(p phase) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.phase != phaseStopped {
		v.phase = p
	}
}

// Pause stops the guest's vCPUs (QMP stop); it returns once they are stopped.
func (v *VM) Pause(ctx context.Context) error {
	v.opMu.Lock()
	defer v.opMu.Unlock()
	c, err := v.running("pause", phaseRunning)
	if err != nil {
		return err
	}
	if err := c.Stop(ctx); err != nil {
		return fmt.Errorf("qemu %s: pause: %w", v.cfg.ID, err)
	}
	v.setPhase(phasePaused)
	return nil
}

// Resume restarts the vCPUs of a paused VM (QMP cont).
func (v *VM) Resume(ctx context.Context) error {
	v.opMu.Lock()
	defer v.opMu.Unlock()
	c, err := v.running("resume", phasePaused)
	if err != nil {
		return err
	}
	if err := c.Cont(ctx); err != nil {
		return fmt.Errorf("qemu %s: resume: %w", v.cfg.ID, err)
	}
	v.setPhase(phaseRunning)
	return nil
}

// State asks QEMU (query-status). After QEMU exited it is StateShutdown without asking.
// QEMU states other than running, paused and shutdown ("prelaunch", "internal-error",
// "guest-panicked", ...) are returned as they are.
func (v *VM) State(ctx context.Context) (hypervisor.State, error) {
	select {
	case <-v.done:
		return hypervisor.StateShutdown, nil
	default:
	}
	c, err := v.running("state", phaseRunning, phasePaused)
	if err != nil {
		return "", err
	}
	st, err := c.QueryStatus(ctx)
	if err != nil {
		select {
		case <-v.done: // QEMU exited while we asked.
			return hypervisor.StateShutdown, nil
		default:
		}
		return "", fmt.Errorf("qemu %s: state: %w", v.cfg.ID, err)
	}
	switch st.Status {
	case "running":
		return hypervisor.StateRunning, nil
	case "paused":
		return hypervisor.StatePaused, nil
	case "shutdown":
		return hypervisor.StateShutdown, nil
	}
	return hypervisor.State(st.Status), nil
}

// Stop makes QEMU exit and reaps it. The caller has already asked the agent to shut the
// guest down; Stop does not wait for the guest: it sends QMP quit, waits for QEMU to exit
// until ctx ends (give it a deadline), then sends SIGKILL. Afterwards Done is closed, the
// sockets are removed and Err is nil, unless QEMU had already died on its own, whose error
// Err keeps. Stop is idempotent; on a VM that never started it only marks it stopped.
func (v *VM) Stop(ctx context.Context) error {
	v.opMu.Lock()
	defer v.opMu.Unlock()
	logger := log.G(ctx).WithField("vm", v.cfg.ID)

	v.mu.Lock()
	switch v.phase {
	case phaseCreated:
		v.phase = phaseStopped
		v.mu.Unlock()
		close(v.done)
		return nil
	case phaseStopped:
		v.mu.Unlock()
		<-v.done // the waiter sets stopped just before closing done
		return nil
	case phaseDetached: // another process owns the VMM now
		v.mu.Unlock()
		return nil
	}
	select {
	case <-v.exited: // QEMU died on its own before this Stop: keep that error.
	default:
		v.stopRequested = true
	}
	c := v.client
	v.mu.Unlock()

	if err := c.Quit(ctx); err != nil {
		logger.WithError(err).Debug("qmp quit failed; killing qemu")
		v.kill()
	}
	select {
	case <-v.done:
		return nil
	case <-ctx.Done():
	}
	logger.Warn("qemu did not exit before the stop deadline; killing it")
	v.kill()
	select {
	case <-v.done:
		return nil
	case <-time.After(reapTimeout):
		return fmt.Errorf("qemu %s: pid %d not reaped %s after SIGKILL", v.cfg.ID, v.Pid(), reapTimeout)
	}
}

// kill sends SIGKILL to QEMU. os.Process uses a pidfd where the kernel has one, so this
// cannot hit a recycled pid.
func (v *VM) kill() {
	v.mu.Lock()
	cmd := v.cmd
	v.mu.Unlock()
	if cmd != nil && cmd.Process != nil {
		_ = cmd.Process.Signal(syscall.SIGKILL)
	}
}
