//go:build linux

package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
	"github.com/vessel-containers/vessel/internal/agent/libct"
)

// The Debug service runs an operator's processes in the guest itself, outside every
// container: the guest's namespaces and root file system, as root. It is served only for a
// sandbox the host created with debug_console set; the agent checks that on every call,
// whatever the host sends later.

// DebugShell is the shell a DebugStart without arguments runs. The initramfs has it only
// when it was built with the debug console (`vessel image build --debug-console`).
const DebugShell = "/bin/sh"

// debugBusybox is the busybox `vessel image build --debug-console` installs; a command
// not found on the PATH is run as its applet.
const debugBusybox = "/bin/busybox"

// debugPath is the PATH of debug processes.
const debugPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

var _ agentv1.DebugService = (*Service)(nil)

// debugAllowed returns nil when the sandbox was created with the debug console enabled,
// an errdefs.ErrPermissionDenied error otherwise.
func (s *Service) debugAllowed() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sandbox == nil || !s.sandbox.ready {
		return fmt.Errorf("%w: debug console: no sandbox: it is enabled by CreateSandbox (debug_console)", errdefs.ErrPermissionDenied)
	}
	if !s.sandbox.debugConsole {
		return fmt.Errorf("%w: debug console: sandbox %q was created without it (agent.debug_console_enabled)", errdefs.ErrPermissionDenied, s.sandbox.id)
	}
	return nil
}

// debugProcess finds a debug process once the debug console is allowed.
func (s *Service) debugProcess(execID string) (*process, error) {
	if err := s.debugAllowed(); err != nil {
		return nil, err
	}
	s.debugMu.Lock()
	defer s.debugMu.Unlock()
	p, ok := s.debugProcs[execID]
	if !ok {
		return nil, fmt.Errorf("debug process %q: %w", execID, errdefs.ErrNotFound)
	}
	return p, nil
}

// forgetDebugIfDone drops a debug process once the host has its status and all its output.
func (s *Service) forgetDebugIfDone(p *process) {
	if !p.done() {
		return
	}
	s.debugMu.Lock()
	defer s.debugMu.Unlock()
	if s.debugProcs[p.execID] == p {
		delete(s.debugProcs, p.execID)
	}
}

// debugRunner is a debug process started with os/exec.
type debugRunner struct {
	cmd *exec.Cmd
	// disown ends the process's ownership in the orphan reaper once it was waited for.
	disown func()
}

func (r *debugRunner) Pid() int { return r.cmd.Process.Pid }

func (r *debugRunner) Signal(sig unix.Signal) error {
	if err := r.cmd.Process.Signal(sig); err != nil {
		if errors.Is(err, os.ErrProcessDone) {
			return fmt.Errorf("%w: process already exited", errdefs.ErrNotFound)
		}
		return fmt.Errorf("signal process: %w", err)
	}
	return nil
}

func (r *debugRunner) Wait() (int, error) {
	err := r.cmd.Wait()
	r.disown()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return -1, fmt.Errorf("wait: %w", err)
	}
	ws, ok := r.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok {
		return r.cmd.ProcessState.ExitCode(), nil
	}
	return libct.ExitStatus(ws), nil
}

// debugCommand builds the command of a DebugStart request.
func debugCommand(req *agentv1.DebugStartRequest) (*exec.Cmd, error) {
	args := req.GetArgs()
	if len(args) == 0 {
		args = []string{DebugShell}
	}
	path := args[0]
	if !strings.Contains(path, "/") {
		for _, dir := range strings.Split(debugPath, ":") {
			if st, err := os.Stat(dir + "/" + path); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
				path = dir + "/" + path
				break
			}
		}
	}
	if _, err := os.Stat(path); err != nil && !strings.Contains(path, "/") && busyboxApplets()[path] {
		// The debug console's busybox has no link per applet: it runs the one argv[0] names.
		return &exec.Cmd{Path: debugBusybox, Args: args, Dir: "/", Env: debugEnv(req)}, nil
	}
	if _, err := os.Stat(path); err != nil {
		if path == DebugShell {
			return nil, fmt.Errorf("%w: the guest has no shell %s: build the guest image with `vessel image build --debug-console`", errdefs.ErrNotFound, DebugShell)
		}
		return nil, fmt.Errorf("%w: %q is not in the guest (PATH %s): %w", errdefs.ErrNotFound, args[0], debugPath, err)
	}
	return &exec.Cmd{Path: path, Args: args, Dir: "/", Env: debugEnv(req)}, nil
}

// debugEnv is a debug process's environment: a default PATH, HOME and TERM, then the
// request's.
func debugEnv(req *agentv1.DebugStartRequest) []string {
	return append([]string{"PATH=" + debugPath, "HOME=/", "TERM=xterm"}, req.GetEnv()...)
}

// openPty opens a new pseudo-terminal of the guest's devpts, sized rows×cols when both are
// set. The slave keeps the kernel's defaults (echo, line editing, signals from ^C): it is
// the debug shell's own terminal.
func openPty(rows, cols uint32) (master, slave *os.File, retErr error) {
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open /dev/ptmx: %w", err)
	}
	defer func() {
		if retErr != nil {
			master.Close()
		}
	}()
	rc, err := master.SyscallConn()
	if err != nil {
		return nil, nil, fmt.Errorf("pty: %w", err)
	}
	var n uint32
	var ioctlErr error
	if err := rc.Control(func(fd uintptr) {
		if ioctlErr = unix.IoctlSetPointerInt(int(fd), unix.TIOCSPTLCK, 0); ioctlErr != nil {
			return
		}
		if n, ioctlErr = unix.IoctlGetUint32(int(fd), unix.TIOCGPTN); ioctlErr != nil {
			return
		}
		if rows > 0 && cols > 0 {
			ioctlErr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: uint16(rows), Col: uint16(cols)})
		}
	}); err != nil {
		return nil, nil, fmt.Errorf("pty: %w", err)
	}
	if ioctlErr != nil {
		return nil, nil, fmt.Errorf("pty: %w", ioctlErr)
	}
	slavePath := fmt.Sprintf("/dev/pts/%d", n)
	slave, err = os.OpenFile(slavePath, os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open pty slave %s: %w", slavePath, err)
	}
	return master, slave, nil
}

// newDebugIO prepares a debug process's stdio: a terminal, or pipes like a container
// process's.
func newDebugIO(cmd *exec.Cmd, cfg *agentv1.StdioConfig) (*processIO, error) {
	if !cfg.GetTerminal() {
		pio, st, err := newProcessIO(cfg, false)
		if err != nil {
			return nil, err
		}
		cmd.Stdin, cmd.Stdout, cmd.Stderr = st.Stdin, st.Stdout, st.Stderr
		if st.Stdin == nil {
			cmd.Stdin = nil // /dev/null
		}
		return pio, nil
	}
	master, slave, err := openPty(cfg.GetConsoleHeight(), cfg.GetConsoleWidth())
	if err != nil {
		return nil, err
	}
	pio := &processIO{stdout: newStream(), stderr: newStream(), tty: master, stdin: master, child: []*os.File{slave}}
	pio.stderr.finish() // a terminal has no separate stderr
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	// A session of its own with the terminal as its controlling terminal: ^C and a
	// resize reach the shell's foreground job.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	return pio, nil
}

// DebugStart starts a process in the guest, outside every container.
func (s *Service) DebugStart(ctx context.Context, req *agentv1.DebugStartRequest) (*agentv1.Empty, error) {
	if err := s.debugAllowed(); err != nil {
		return nil, err
	}
	if err := validID("exec_id", req.GetExecId()); err != nil {
		return nil, err
	}
	// Debug processes (and the busybox run to list its applets) are the agent's children,
	// waited for here: the orphan reaper must leave them.
	release := s.cfg.Reaper.Hold()
	defer release()
	cmd, err := debugCommand(req)
	if err != nil {
		return nil, err
	}
	s.debugMu.Lock()
	defer s.debugMu.Unlock()
	if _, ok := s.debugProcs[req.GetExecId()]; ok {
		return nil, fmt.Errorf("debug process %q: %w", req.GetExecId(), errdefs.ErrAlreadyExists)
	}
	pio, err := newDebugIO(cmd, req.GetStdio())
	if err != nil {
		return nil, err
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	}
	if err := cmd.Start(); err != nil {
		pio.abort()
		return nil, fmt.Errorf("start debug process %q: %w", req.GetExecId(), err)
	}
	p := newProcess("", req.GetExecId(), &debugRunner{cmd: cmd, disown: s.cfg.Reaper.Own(cmd.Process.Pid)}, pio)
	p.watch(ctx, 0, func() uint64 { return 0 }, func(p *process) { s.forgetDebugIfDone(p) })
	if err := pio.afterStart(ctx); err != nil {
		_ = p.proc.Signal(unix.SIGKILL)
		<-p.exited
		pio.shutdown()
		return nil, fmt.Errorf("%s: %w", p.name(), err)
	}
	if s.debugProcs == nil {
		s.debugProcs = map[string]*process{}
	}
	s.debugProcs[p.execID] = p
	log.G(ctx).WithField("args", cmd.Args).Infof("debug process %q started, pid %d", p.execID, p.pid)
	return &agentv1.Empty{}, nil
}

// DebugWriteStdin writes to a debug process's stdin or terminal.
func (s *Service) DebugWriteStdin(ctx context.Context, req *agentv1.DebugWriteRequest) (*agentv1.WriteStreamResponse, error) {
	p, err := s.debugProcess(req.GetExecId())
	if err != nil {
		return nil, err
	}
	n, err := p.io.write(ctx, req.GetData())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.name(), err)
	}
	return &agentv1.WriteStreamResponse{Len: uint32(n)}, nil
}

// DebugReadStdout long-polls a debug process's stdout or terminal.
func (s *Service) DebugReadStdout(ctx context.Context, req *agentv1.DebugReadRequest) (*agentv1.ReadStreamResponse, error) {
	return s.debugRead(ctx, req, func(p *process) *stream { return p.io.stdout })
}

// DebugReadStderr long-polls a debug process's stderr; a terminal has none (eof at once).
func (s *Service) DebugReadStderr(ctx context.Context, req *agentv1.DebugReadRequest) (*agentv1.ReadStreamResponse, error) {
	return s.debugRead(ctx, req, func(p *process) *stream { return p.io.stderr })
}

func (s *Service) debugRead(ctx context.Context, req *agentv1.DebugReadRequest, pick func(*process) *stream) (*agentv1.ReadStreamResponse, error) {
	p, err := s.debugProcess(req.GetExecId())
	if err != nil {
		return nil, err
	}
	return readOutput(ctx, p, pick(p), req.GetLen(), s.forgetDebugIfDone)
}

// DebugCloseStdin closes a debug process's stdin.
func (s *Service) DebugCloseStdin(ctx context.Context, req *agentv1.DebugProcessRequest) (*agentv1.Empty, error) {
	p, err := s.debugProcess(req.GetExecId())
	if err != nil {
		return nil, err
	}
	if err := p.io.closeStdin(); err != nil {
		return nil, fmt.Errorf("%s: %w", p.name(), err)
	}
	return &agentv1.Empty{}, nil
}

// DebugResize sets the terminal size of a debug process.
func (s *Service) DebugResize(ctx context.Context, req *agentv1.DebugResizeRequest) (*agentv1.Empty, error) {
	p, err := s.debugProcess(req.GetExecId())
	if err != nil {
		return nil, err
	}
	if err := p.io.resize(req.GetRow(), req.GetColumn()); err != nil {
		return nil, fmt.Errorf("%s: %w", p.name(), err)
	}
	return &agentv1.Empty{}, nil
}

// DebugSignal signals a debug process.
func (s *Service) DebugSignal(ctx context.Context, req *agentv1.DebugSignalRequest) (*agentv1.Empty, error) {
	if req.GetSignal() > 64 {
		return nil, fmt.Errorf("%w: signal %d is not a signal number (0-64)", errdefs.ErrInvalidArgument, req.GetSignal())
	}
	p, err := s.debugProcess(req.GetExecId())
	if err != nil {
		return nil, err
	}
	if p.hasExited() {
		return nil, fmt.Errorf("%s: %w: process already exited", p.name(), errdefs.ErrNotFound)
	}
	return &agentv1.Empty{}, p.proc.Signal(unix.Signal(req.GetSignal()))
}

// DebugWait blocks until a debug process exits and returns its status.
func (s *Service) DebugWait(ctx context.Context, req *agentv1.DebugProcessRequest) (*agentv1.WaitProcessResponse, error) {
	p, err := s.debugProcess(req.GetExecId())
	if err != nil {
		return nil, err
	}
	status, _, err := p.wait(ctx)
	if err != nil {
		return nil, fmt.Errorf("wait for %s: %w", p.name(), err)
	}
	s.forgetDebugIfDone(p)
	return &agentv1.WaitProcessResponse{Status: int32(status)}, nil
}

// busyboxApplets are the applets of debugBusybox (none without it), read once.
var busyboxApplets = sync.OnceValue(func() map[string]bool {
	out, err := exec.Command(debugBusybox, "--list").Output()
	if err != nil {
		return nil
	}
	applets := map[string]bool{}
	for _, a := range strings.Fields(string(out)) {
		applets[a] = true
	}
	return applets
})
