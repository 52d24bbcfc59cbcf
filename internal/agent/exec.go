//go:build linux

package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
	"github.com/vessel-containers/vessel/internal/agent/libct"
	"github.com/vessel-containers/vessel/internal/tracing"
)

// processFor finds the container's init (empty execID) or one of its exec processes.
func (s *Service) processFor(containerID, execID string) (*container, *process, error) {
	c, err := s.lookup(containerID)
	if err != nil {
		return nil, nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if execID == "" || execID == c.initExecID {
		return c, c.init, nil
	}
	p, ok := c.execs[execID]
	if !ok {
		return nil, nil, fmt.Errorf("exec %q in container %q: %w", execID, containerID, errdefs.ErrNotFound)
	}
	return c, p, nil
}

// forgetIfDone drops an exec process once the host has its status and all its output.
func (c *container) forgetIfDone(p *process) {
	if p.execID == "" || !p.done() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.execs[p.execID] == p {
		delete(c.execs, p.execID)
	}
}

// execSpec builds the OCI process of an exec request. oci_process wins over the plain
// fields; missing env and cwd come from the container's process.
func execSpec(c *container, req *agentv1.ExecProcessRequest) (*specs.Process, error) {
	rp := req.GetProcess()
	if rp == nil {
		return nil, fmt.Errorf("%w: process is missing", errdefs.ErrInvalidArgument)
	}
	var sp specs.Process
	if raw := rp.GetOciProcess(); len(raw) > 0 {
		if err := json.Unmarshal(raw, &sp); err != nil {
			return nil, fmt.Errorf("%w: process.oci_process is not OCI process JSON: %w", errdefs.ErrInvalidArgument, err)
		}
	} else {
		sp = specs.Process{
			Args:            rp.GetArgs(),
			Env:             rp.GetEnv(),
			Cwd:             rp.GetCwd(),
			User:            specs.User{UID: rp.GetUid(), GID: rp.GetGid(), AdditionalGids: rp.GetAdditionalGids()},
			NoNewPrivileges: rp.GetNoNewPrivileges() || c.spec.Process.NoNewPrivileges,
			ApparmorProfile: rp.GetApparmorProfile(),
			// Capabilities and rlimits: those of the container's process.
			Capabilities: c.spec.Process.Capabilities,
			Rlimits:      c.spec.Process.Rlimits,
		}
	}
	if len(sp.Args) == 0 {
		return nil, fmt.Errorf("%w: process.args is empty", errdefs.ErrInvalidArgument)
	}
	if len(sp.Env) == 0 {
		sp.Env = c.spec.Process.Env
	}
	if sp.Cwd == "" {
		sp.Cwd = c.spec.Process.Cwd
	}
	return &sp, nil
}

// ExecProcess starts a new process in a running container.
func (s *Service) ExecProcess(ctx context.Context, req *agentv1.ExecProcessRequest) (*agentv1.Empty, error) {
	if err := validID("exec_id", req.GetExecId()); err != nil {
		return nil, err
	}
	c, err := s.lookup(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	sp, err := execSpec(c, req)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if req.GetIgnorePaused() {
		if err := c.waitUnpaused(ctx); err != nil { // container.go
			return nil, err
		}
	}
	// As with runc, a created container takes execs: they join the namespaces of its init,
	// which waits to be started.
	if st := c.status(); (st != stateRunning && st != stateCreated) || c.removing {
		return nil, fmt.Errorf("container %q: %w: it is %s, exec needs it created or running", c.id, errdefs.ErrFailedPrecondition, st)
	}
	if _, ok := c.execs[req.GetExecId()]; ok || req.GetExecId() == c.initExecID {
		return nil, fmt.Errorf("exec %q in container %q: %w", req.GetExecId(), c.id, errdefs.ErrAlreadyExists)
	}
	pio, stdio, err := newProcessIO(req.GetStdio(), sp.Terminal)
	if err != nil {
		return nil, err
	}
	proc, err := libct.NewProcess(sp, false, c.spec.Mounts, stdio)
	if err != nil {
		pio.abort()
		return nil, err
	}
	_, span := tracing.Start(ctx, "libcontainer start exec")
	entries, err := c.lc.Start(proc, libct.StartOptions{Record: req.GetInitLog()})
	tracing.End(span, err)
	if req.GetInitLog() {
		s.initLogs.put(c.id, req.GetExecId(), entries) // initlog.go
	}
	if err != nil {
		pio.abort()
		return nil, err
	}
	p := newProcess(c.id, req.GetExecId(), proc, pio)
	p.watch(ctx, c.oomKills(), c.oomKills, c.forgetIfDone)
	if err := pio.afterStart(ctx); err != nil {
		_ = p.proc.Signal(unix.SIGKILL)
		<-p.exited
		pio.shutdown()
		return nil, fmt.Errorf("%s: %w", p.name(), err)
	}
	c.execs[p.execID] = p
	log.G(ctx).WithField("container", c.id).Debugf("exec %q started, pid %d", p.execID, p.pid)
	return &agentv1.Empty{}, nil
}

// SignalProcess signals the init, an exec process, or every process of the container.
func (s *Service) SignalProcess(ctx context.Context, req *agentv1.SignalProcessRequest) (*agentv1.Empty, error) {
	sig := unix.Signal(req.GetSignal())
	// Signal 0 sends nothing and checks that the process exists, as kill(2) does.
	if req.GetSignal() > 64 {
		return nil, fmt.Errorf("%w: signal %d is not a signal number (0-64)", errdefs.ErrInvalidArgument, req.GetSignal())
	}
	c, p, err := s.processFor(req.GetContainerId(), req.GetExecId())
	if err != nil {
		return nil, err
	}
	if req.GetAll() {
		if err := c.lc.SignalAll(sig); err != nil {
			return nil, fmt.Errorf("signal all processes of %q: %w", c.id, err)
		}
		return &agentv1.Empty{}, nil
	}
	if p.hasExited() {
		return nil, fmt.Errorf("%s: %w: process already exited", p.name(), errdefs.ErrNotFound)
	}
	if p.execID == "" {
		return &agentv1.Empty{}, c.lc.Signal(sig)
	}
	return &agentv1.Empty{}, p.proc.Signal(sig)
}

// WaitProcess blocks until the process exits and returns its status.
func (s *Service) WaitProcess(ctx context.Context, req *agentv1.WaitProcessRequest) (*agentv1.WaitProcessResponse, error) {
	c, p, err := s.processFor(req.GetContainerId(), req.GetExecId())
	if err != nil {
		return nil, err
	}
	status, oom, err := p.wait(ctx)
	if err != nil {
		return nil, fmt.Errorf("wait for %s: %w", p.name(), err)
	}
	c.forgetIfDone(p)
	return &agentv1.WaitProcessResponse{Status: int32(status), OomKilled: oom}, nil
}

// ListProcesses lists the container's processes with their exec ids, command lines and
// what ps(1) shows of them.
func (s *Service) ListProcesses(ctx context.Context, req *agentv1.ListProcessesRequest) (*agentv1.ListProcessesResponse, error) {
	c, err := s.lookup(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	pids, err := c.lc.Processes()
	if err != nil {
		return nil, err
	}
	execOf := map[int]string{}
	initPid := -1
	c.mu.Lock()
	if c.init != nil {
		initPid = c.init.pid
		execOf[initPid] = c.initExecID
	}
	for id, p := range c.execs {
		execOf[p.pid] = id
	}
	c.mu.Unlock()
	slices.Sort(pids)
	btime, err := bootTimeUnix("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes of %s: %w", req.GetContainerId(), err)
	}
	resp := &agentv1.ListProcessesResponse{}
	for _, pid := range pids {
		cmd, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		cmd = bytes.TrimRight(cmd, "\x00")
		info := &agentv1.ProcessInfo{
			Pid:     uint32(pid),
			ExecId:  execOf[pid],
			Init:    pid == initPid,
			Cmdline: string(bytes.ReplaceAll(cmd, []byte{0}, []byte{' '})),
		}
		fillPsInfo(info, "/proc", pid, btime)
		resp.Processes = append(resp.Processes, info)
	}
	return resp, nil
}

// WriteStdin writes to the process's stdin and returns how much was written.
func (s *Service) WriteStdin(ctx context.Context, req *agentv1.WriteStreamRequest) (*agentv1.WriteStreamResponse, error) {
	_, p, err := s.processFor(req.GetContainerId(), req.GetExecId())
	if err != nil {
		return nil, err
	}
	n, err := p.io.write(ctx, req.GetData())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.name(), err)
	}
	return &agentv1.WriteStreamResponse{Len: uint32(n)}, nil
}

// ReadStdout long-polls the process's stdout (or terminal).
func (s *Service) ReadStdout(ctx context.Context, req *agentv1.ReadStreamRequest) (*agentv1.ReadStreamResponse, error) {
	return s.readStream(ctx, req, func(p *process) *stream { return p.io.stdout })
}

// ReadStderr long-polls the process's stderr; a terminal has none (eof at once).
func (s *Service) ReadStderr(ctx context.Context, req *agentv1.ReadStreamRequest) (*agentv1.ReadStreamResponse, error) {
	return s.readStream(ctx, req, func(p *process) *stream { return p.io.stderr })
}

func (s *Service) readStream(ctx context.Context, req *agentv1.ReadStreamRequest, pick func(*process) *stream) (*agentv1.ReadStreamResponse, error) {
	c, p, err := s.processFor(req.GetContainerId(), req.GetExecId())
	if err != nil {
		return nil, err
	}
	return readOutput(ctx, p, pick(p), req.GetLen(), c.forgetIfDone)
}

// readOutput long-polls up to n bytes of p's output stream st; at its end, forget is
// told, to drop p once all of it was read and its status collected.
func readOutput(ctx context.Context, p *process, st *stream, n uint32, forget func(*process)) (*agentv1.ReadStreamResponse, error) {
	data, eof, err := st.Read(ctx, int(n))
	if err != nil {
		return nil, fmt.Errorf("read output of %s: %w", p.name(), err)
	}
	if eof {
		forget(p)
	}
	return &agentv1.ReadStreamResponse{Data: data, Eof: eof}, nil
}

// CloseStdin closes the process's stdin.
func (s *Service) CloseStdin(ctx context.Context, req *agentv1.CloseStdinRequest) (*agentv1.Empty, error) {
	_, p, err := s.processFor(req.GetContainerId(), req.GetExecId())
	if err != nil {
		return nil, err
	}
	if err := p.io.closeStdin(); err != nil {
		return nil, fmt.Errorf("%s: %w", p.name(), err)
	}
	return &agentv1.Empty{}, nil
}

// TtyWinResize sets the terminal size of the process.
func (s *Service) TtyWinResize(ctx context.Context, req *agentv1.TtyWinResizeRequest) (*agentv1.Empty, error) {
	_, p, err := s.processFor(req.GetContainerId(), req.GetExecId())
	if err != nil {
		return nil, err
	}
	if err := p.io.resize(req.GetRow(), req.GetColumn()); err != nil {
		return nil, fmt.Errorf("%s: %w", p.name(), err)
	}
	return &agentv1.Empty{}, nil
}
