package qemu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/hypervisor/qemu/qmp"
	"github.com/vessel-containers/vessel/internal/jail"
	"github.com/vessel-containers/vessel/internal/tracing"
	"github.com/vessel-containers/vessel/internal/unixsock"
)

// drainTimeout bounds how long the waiter waits, after QEMU exited, for the QMP and
// console readers to read the last events and output (QEMU's exit closes the sockets, so
// this is normally immediate).
const drainTimeout = 5 * time.Second

// errExited cancels Start's QMP handshake when QEMU exits first.
var errExited = errors.New("qemu exited during start")

// Start checks the binary, kernel, initrd and shared paths, starts QEMU and returns once
// QMP reports the machine running (the kernel is loaded and the vCPUs run). ctx
// bounds Start only, not the life of the VM. On error QEMU has been killed and reaped, its
// sockets removed, and the error quotes qemu.log.
func (v *VM) Start(ctx context.Context) (retErr error) {
	ctx, span := tracing.Start(ctx, "qemu start", trace.WithAttributes(attribute.String("vm.id", v.cfg.ID)))
	defer func() { tracing.End(span, retErr) }()
	v.opMu.Lock()
	defer v.opMu.Unlock()

	v.mu.Lock()
	if v.phase != phaseCreated {
		p := v.phase
		v.mu.Unlock()
		return fmt.Errorf("qemu %s: start: vm is %s, a vm starts once: %w", v.cfg.ID, p, errdefs.ErrFailedPrecondition)
	}
	v.phase = phaseStarting
	v.mu.Unlock()

	var err error
	if v.cfg.Adopt != nil {
		err = v.adopt(ctx) // template_adopt_linux.go
	} else {
		err = v.start(ctx)
	}
	if err != nil {
		return fmt.Errorf("qemu %s: start: %w", v.cfg.ID, err)
	}
	return nil
}

// failBeforeExec marks a VM whose QEMU never ran as stopped.
func (v *VM) failBeforeExec(err error) error {
	v.mu.Lock()
	v.phase = phaseStopped
	v.exitErr = err
	v.mu.Unlock()
	close(v.done)
	return err
}

func (v *VM) start(ctx context.Context) error {
	logger := log.G(ctx).WithField("vm", v.cfg.ID)
	if err := v.preflight(); err != nil {
		return v.failBeforeExec(err)
	}
	accel, err := resolveAccel(v.cfg.Accelerator, v.probeKVM)
	if err != nil {
		return v.failBeforeExec(err)
	}

	begin := time.Now()
	_, span := tracing.Start(ctx, "qemu exec")
	cmd, release, err := v.exec(accel, logger)
	tracing.End(span, err)
	if err != nil {
		v.removeSockets()
		return v.failBeforeExec(err)
	}

	exited := make(chan struct{})
	started := make(chan struct{})
	v.mu.Lock()
	v.cmd, v.exited, v.accel = cmd, exited, accel
	v.mu.Unlock()
	go func() { // owner: the VM; ends when QEMU has exited
		defer release()
		v.wait(cmd, exited, started, logger)
	}()

	if err := v.startConsole(logger); err != nil {
		return v.failAfterExec(err, started)
	}
	restore := templateMode(&v.cfg) == hypervisor.TemplateRestore
	cctx, span := tracing.Start(ctx, "qmp connect")
	err = v.connect(cctx, exited, started, restore, logger)
	tracing.End(span, err)
	if err != nil {
		return err
	}
	logger.WithField("pid", cmd.Process.Pid).WithField("accel", accel).
		WithField("elapsed", time.Since(begin)).Info("qemu started")
	return nil
}

// exec creates the sockets and QEMU's log, and starts QEMU with them, confined by the jail
// entry (jail.go), which execs QEMU in place: the process started here is QEMU. QEMU gets
// the only copies of the listening sockets: if it dies before accepting, a queued
// connection is reset instead of waiting.
func (v *VM) exec(accel hypervisor.Accelerator, logger *log.Entry) (*exec.Cmd, func(), error) {
	var files []*os.File
	defer func() {
		for _, f := range files {
			_ = f.Close()
		}
	}()
	for _, name := range socketNames {
		f, err := unixsock.ListenFile(v.statePath(name), 0o600) // QEMU owns it; the driver removes the file when QEMU exits
		if err != nil {
			return nil, nil, err
		}
		files = append(files, f)
	}
	qemuLog, err := os.OpenFile(v.statePath(qemuLogName), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("create qemu log: %w", err)
	}
	files = append(files, qemuLog)

	// QMP, agent and console listeners are fds 3, 4 and 5 in QEMU; the NICs' descriptors
	// (the caller's, not closed here) follow.
	readOnlyRAM, err := restoreReadOnly(&v.cfg, v.binary) // template.go
	if err != nil {
		return nil, nil, err
	}
	l := launch{accel: accel, qmpFD: 3, agentFD: 4, consoleFD: 5, readOnlyRAM: readOnlyRAM}
	if isMicroVM(&v.cfg) && accel == hypervisor.AccelTCG {
		if l.tscKHz = hostTSCKHz(); l.tscKHz == 0 {
			return nil, nil, fmt.Errorf("hypervisor.machine_type %q under TCG needs the host's TSC frequency, and this host's TSC is not constant and non-stop (or not readable): use \"q35\"", machineMicroVM)
		}
	}
	extra := append([]*os.File{}, files[:3]...)
	for _, n := range v.cfg.NICs {
		var fds nicFDs
		for _, q := range append([]hypervisor.NICQueue{{Tap: n.Tap, Vhost: n.Vhost}}, n.MoreQueues...) {
			fds.taps = append(fds.taps, 3+len(extra))
			extra = append(extra, q.Tap)
			if q.Vhost != nil {
				fds.vhosts = append(fds.vhosts, 3+len(extra))
				extra = append(extra, q.Vhost)
			}
		}
		l.nics = append(l.nics, fds)
	}
	args := commandLine(&v.cfg, l)
	spec := jailSpec(v.binary, args, len(extra))
	if v.cfg.UserNS != nil {
		spec.KeepCaps = qemuUserNSCaps
		spec.Root = jailRoot(&v.cfg, v.binary, accel)
	}
	cmd, err := jail.Command(spec)
	if err != nil {
		return nil, nil, err
	}
	cmd.ExtraFiles = extra
	// The minimal root's paths go as clones made here (jail.PassRoot): QEMU's ids need
	// not reach them. Closed once the entry holds its own copies, or on any failure.
	closeRoot, err := jail.PassRoot(cmd, spec)
	if err != nil {
		return nil, nil, err
	}
	defer closeRoot()
	cmd.Stdout, cmd.Stderr = qemuLog, qemuLog
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.SysProcAttr = sysProcAttr()
	handoverAttr(&v.cfg, cmd.SysProcAttr)
	if v.cfg.UserNS != nil {
		if err := userNSAttr(cmd.SysProcAttr, *v.cfg.UserNS, accel); err != nil { // userns_linux.go
			return nil, nil, err
		}
	}
	logger.WithField("accel", accel).WithField("args", args).Debug("starting qemu")
	// Pdeathsig ties QEMU to the thread that forks it: that thread stays reserved until
	// QEMU exited (wait releases it).
	release, err := jail.StartPinned(cmd)
	if err != nil {
		return nil, nil, fmt.Errorf("exec %s in the jail entry: %w", v.binary, err)
	}
	return cmd, release, nil
}

// connect connects to the QMP socket of a QEMU that was just started or adopted and waits
// until the machine runs, restoring it from its template first if restore is set. QEMU
// exiting (exited closes) ends the wait. On success the VM is running and its QMP events
// are consumed; on error QEMU has been killed and reaped (failAfterExec) and the VM's
// error is returned. Either way started is closed, so that the waiter goes on.
func (v *VM) connect(ctx context.Context, exited, started chan struct{}, restore bool, logger *log.Entry) error {
	// The listening socket already exists, so the connection is queued at once; QEMU
	// answers once its main loop runs. If QEMU exits first, stop waiting.
	dctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() { // owner: connect; returns when QEMU exits or when connect returns (cancel)
		select {
		case <-exited:
			cancel(errExited)
		case <-dctx.Done():
		}
	}()
	client, err := qmp.Dial(dctx, v.statePath(qmpSocketName))
	if err != nil {
		return v.failAfterExec(startErr(dctx, err), started)
	}
	// QEMU greets before it creates the machine (loads the kernel); commands run in its
	// main loop, so an answer to query-status means the machine exists.
	st, err := client.QueryStatus(dctx)
	if err == nil && restore {
		st, err = v.restore(dctx, client)
	}
	if err == nil && st.Status != "running" {
		err = fmt.Errorf("qemu reports status %q, want running", st.Status)
	}
	if err != nil {
		_ = client.Close()
		return v.failAfterExec(startErr(dctx, err), started)
	}

	eventsDone := make(chan struct{})
	go v.consumeEvents(client.Events(), eventsDone, logger)
	v.mu.Lock()
	v.client = client
	v.eventsDone = eventsDone
	v.phase = phaseRunning
	v.mu.Unlock()
	close(started)
	return nil
}

// startErr says whether QEMU exited while Start waited for it.
func startErr(ctx context.Context, err error) error {
	if errors.Is(context.Cause(ctx), errExited) {
		return fmt.Errorf("%w: %w", errExited, err)
	}
	return err
}

// failAfterExec kills and reaps a QEMU that did not come up; the waiter turns err into
// the VM's error, with QEMU's exit status and the tails of its logs.
func (v *VM) failAfterExec(err error, started chan struct{}) error {
	v.kill()
	v.mu.Lock()
	v.startErr = err
	v.mu.Unlock()
	close(started)
	<-v.done
	return v.Err()
}

// preflight checks every path QEMU needs, so that a missing one is reported by name
// before anything starts.
func (v *VM) preflight() error {
	if err := checkFile("qemu binary", v.binary, true); err != nil {
		return err
	}
	if err := checkFile("kernel", v.cfg.Kernel, false); err != nil {
		return err
	}
	if err := checkTemplate(&v.cfg); err != nil {
		return err
	}
	if err := checkUserNS(&v.cfg); err != nil {
		return err
	}
	if v.cfg.Initrd != "" {
		if err := checkFile("initrd", v.cfg.Initrd, false); err != nil {
			return err
		}
	}
	if st, err := os.Stat(v.cfg.StateDir); err != nil {
		return fmt.Errorf("state dir: %w", err)
	} else if !st.IsDir() {
		return fmt.Errorf("state dir %s is not a directory: %w", v.cfg.StateDir, errdefs.ErrInvalidArgument)
	}
	switch v.cfg.SharedFS {
	case hypervisor.SharedFS9P:
		if st, err := os.Stat(v.cfg.SharedDir); err != nil {
			return fmt.Errorf("shared dir: %w", err)
		} else if !st.IsDir() {
			return fmt.Errorf("shared dir %s is not a directory: %w", v.cfg.SharedDir, errdefs.ErrInvalidArgument)
		}
	case hypervisor.SharedFSVirtioFS:
		st, err := os.Stat(v.cfg.VirtioFSSocket)
		if err != nil {
			return fmt.Errorf("virtiofsd socket (is virtiofsd running?): %w", err)
		}
		if st.Mode().Type() != fs.ModeSocket {
			return fmt.Errorf("virtiofsd socket %s is not a socket: %w", v.cfg.VirtioFSSocket, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// checkFile reports a missing or unusable file, naming what it is for and its path.
func checkFile(what, path string, executable bool) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s %s is not a regular file: %w", what, path, errdefs.ErrInvalidArgument)
	}
	if executable && st.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s %s is not executable: %w", what, path, errdefs.ErrInvalidArgument)
	}
	return nil
}

// socketNames are the listening sockets the driver creates for QEMU, in the order of
// their descriptors (3, 4, 5).
var socketNames = []string{qmpSocketName, agentSocketName, consoleSocketName}

// removeSockets removes the sockets the driver created.
func (v *VM) removeSockets() {
	for _, name := range socketNames {
		_ = os.Remove(v.statePath(name))
	}
}

// wait owns cmd.Wait. After QEMU exits it lets Start finish, drains the QMP events,
// removes the sockets, records why QEMU exited and closes done.
func (v *VM) wait(cmd *exec.Cmd, exited, started chan struct{}, logger *log.Entry) {
	waitErr := cmd.Wait()
	stopRequested, reason, startErr := v.afterExit(exited, started, logger)
	var err error
	switch {
	case startErr != nil && v.sandboxUnsupported():
		err = fmt.Errorf("qemu did not start (%s): %s has no seccomp support, which the VMM jail requires (-sandbox %s): %w%s",
			cmd.ProcessState, v.binary, seccompSandbox, startErr, v.logTails())
	case startErr != nil:
		err = fmt.Errorf("qemu did not start (%s): %w%s", cmd.ProcessState, startErr, v.logTails())
	case !stopRequested:
		err = v.exitError(cmd.Process.Pid, waitErr, reason)
	}
	startFailed := startErr != nil
	v.mu.Lock()
	v.exitErr = err
	v.phase = phaseStopped
	v.mu.Unlock()

	entry := logger.WithField("pid", cmd.Process.Pid).WithField("status", cmd.ProcessState.String())
	switch {
	case startFailed: // Start returns the error
		entry.Debug("qemu did not start")
	case err != nil:
		entry.WithError(err).Warn("qemu exited unexpectedly")
	default:
		entry.Debug("qemu exited")
	}
	close(v.done)
}

// afterExit is the waiters' common part once QEMU exited: it closes exited, waits until
// Start is done with QEMU (started), closes the QMP connection after its last events,
// stops the console reader after the last output, removes the sockets and returns what
// Stop, the guest and Start recorded.
func (v *VM) afterExit(exited, started chan struct{}, logger *log.Entry) (stopRequested bool, shutdownReason string, startErr error) {
	close(exited)
	<-started

	v.mu.Lock()
	client, eventsDone := v.client, v.eventsDone
	v.mu.Unlock()
	if client != nil {
		select {
		case <-client.Done():
		case <-time.After(drainTimeout):
			logger.Warn("qmp connection still open after qemu exited; closing it")
		}
		_ = client.Close()
		<-eventsDone
	}
	v.stopConsole(drainTimeout)
	v.removeSockets()

	v.mu.Lock()
	defer v.mu.Unlock()
	return v.stopRequested, v.shutdownReason, v.startErr
}

// sandboxUnsupported tells whether qemu.log says that QEMU was built without seccomp.
func (v *VM) sandboxUnsupported() bool {
	return bytes.Contains(readTail(v.statePath(qemuLogName), tailBytes), []byte(sandboxUnsupportedMsg))
}

// exitError describes an exit nobody asked for.
func (v *VM) exitError(pid int, waitErr error, shutdownReason string) error {
	reason := ""
	if shutdownReason != "" {
		reason = fmt.Sprintf(" (guest shutdown reason %q)", shutdownReason)
	}
	// A guest panic reboots the guest at once (panic=-1), which -no-reboot turns into
	// QEMU's exit: the console tells what happened.
	if crash, ok := hypervisor.ParseGuestCrash(v.console.tail()); ok {
		status := "status 0"
		if waitErr != nil {
			status = waitErr.Error()
		}
		return fmt.Errorf("qemu %s (pid %d) exited (%s%s): %w%s", v.cfg.ID, pid, status, reason, crash.Error(), v.logTails())
	}
	if waitErr == nil {
		return fmt.Errorf("qemu %s (pid %d) exited with status 0 without a stop request%s%s", v.cfg.ID, pid, reason, v.logTails())
	}
	return fmt.Errorf("qemu %s (pid %d) exited without a stop request: %w%s%s", v.cfg.ID, pid, waitErr, reason, v.logTails())
}

// consumeEvents logs QMP events and records the shutdown reason. It returns when the QMP
// client closes its events channel (connection gone or closed by the waiter).
func (v *VM) consumeEvents(events <-chan qmp.Event, done chan struct{}, logger *log.Entry) {
	defer close(done)
	for ev := range events {
		logger.WithField("event", ev.Name).WithField("data", string(ev.Data)).Debug("qemu event")
		if ev.Name == "DEVICE_DELETED" {
			v.deviceDeleted(ev.Data)
			continue
		}
		v.deliverDeviceEvent(ev)
		if ev.Name != "SHUTDOWN" {
			continue
		}
		var d struct {
			Reason string `json:"reason"`
		}
		if err := json.Unmarshal(ev.Data, &d); err == nil {
			v.mu.Lock()
			v.shutdownReason = d.Reason
			v.mu.Unlock()
		}
	}
}
