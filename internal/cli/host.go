package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/containerd/console"
	"github.com/containerd/log"

	"github.com/vessel-containers/vessel/internal/hostcgroup"
	"github.com/vessel-containers/vessel/internal/procio"
	"github.com/vessel-containers/vessel/internal/shimclient"
)

// processHost is the host process that stands for a container process, from create (or
// exec) until the process exits: its pid is the one `state` reports and --pid-file
// records, and it exits when the process exits. A VM runtime has no host process of the
// container's own; the shim serves the whole sandbox and outlives the container until
// delete, so it cannot stand in. Two implementations: monitorHost, a `vessel monitor` child
// for detached processes (create, run -d, exec -d), and selfHost, the vessel process itself
// for foreground ones (run, exec).
type processHost interface {
	// pid is the host process's pid and start time.
	pid() (int, uint64)
	// sendConsole hands the pty master to the --console-socket (when there is one).
	sendConsole(path string) error
	// start tells the host that the task exists: it starts relaying stdio and waiting.
	start(ctx context.Context) error
	// abort ends the host when the task could not be made.
	abort()
}

// hostConfig describes the process a host stands for.
type hostConfig struct {
	id, execID string
	address    string
	fifos      procio.FIFOs
	terminal   bool
	// consoleSocket receives the pty master; empty for a terminal process in the
	// foreground, which uses vessel's own terminal.
	consoleSocket string
	// rm makes a monitor delete the container when its process exits (run -d --rm).
	rm bool
	// monitorLog is the log file of a monitor.
	monitorLog string
}

// newHost prepares the host of a process: detached processes get a monitor, foreground
// ones this process.
func newHost(ctx context.Context, r *ociRuntime, cfg hostConfig, detach bool) (processHost, error) {
	var master, slave *os.File
	if cfg.terminal && cfg.consoleSocket != "" {
		var err error
		if master, slave, err = procio.NewPty(); err != nil {
			return nil, err
		}
	}
	if detach {
		h, err := startMonitor(ctx, r, cfg, slave)
		if slave != nil {
			slave.Close() // the monitor has its copy
		}
		if err != nil {
			if master != nil {
				master.Close()
			}
			return nil, err
		}
		h.master = master
		return h, nil
	}
	h, err := newSelfHost(ctx, cfg, slave)
	if err != nil {
		if master != nil {
			master.Close()
		}
		if slave != nil {
			slave.Close()
		}
		return nil, err
	}
	h.master = master
	return h, nil
}

// ptyMaster is the master end of a process's pty until it is sent to the console socket.
type ptyMaster struct {
	master *os.File
}

func (p *ptyMaster) sendConsole(path string) error {
	if p.master == nil {
		return nil
	}
	defer func() {
		p.master.Close()
		p.master = nil
	}()
	return procio.SendConsole(path, p.master)
}

func (p *ptyMaster) closeMaster() {
	if p.master != nil {
		p.master.Close()
		p.master = nil
	}
}

// Descriptors a monitor inherits beyond stdio.
const (
	monitorReadyFd = 3 // the monitor writes one byte once its FIFO ends are open
	monitorGoFd    = 4 // the monitor reads one byte: the task exists (EOF: give up)
	monitorTTYFd   = 5 // the pty slave, for a terminal process with a console socket
)

// monitorReadyTimeout bounds the monitor's start-up (a fork, exec and FIFO open).
const monitorReadyTimeout = 10 * time.Second

// monitorHost is a `vessel monitor` child process.
type monitorHost struct {
	ptyMaster
	cmd       *exec.Cmd
	goW       *os.File
	startTime uint64
}

func startMonitor(ctx context.Context, r *ociRuntime, cfg hostConfig, slave *os.File) (_ *monitorHost, retErr error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("start monitor: %w", err)
	}
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start monitor: %w", err)
	}
	defer readyR.Close()
	goR, goW, err := os.Pipe()
	if err != nil {
		readyW.Close()
		return nil, fmt.Errorf("start monitor: %w", err)
	}
	defer func() {
		if retErr != nil {
			goW.Close()
		}
	}()
	args := []string{"--root", r.root, "--log", cfg.monitorLog, "--log-format", r.logFormat}
	if r.debug {
		args = append(args, "--debug")
	}
	args = append(args, "monitor", "--address", cfg.address, "--id", cfg.id,
		"--stdin", cfg.fifos.Stdin, "--stdout", cfg.fifos.Stdout)
	if cfg.fifos.Stderr != "" {
		args = append(args, "--stderr", cfg.fifos.Stderr)
	}
	if cfg.execID != "" {
		args = append(args, "--exec-id", cfg.execID)
	}
	if cfg.rm {
		args = append(args, "--rm")
	}
	cmd := exec.Command(self, args...)
	// One thread runs a relay; a monitor per container process should stay small.
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	cmd.ExtraFiles = []*os.File{readyW, goR}
	// A session of its own: the monitor outlives vessel and no terminal's hang-up or job
	// control reaches it; with a pty, the slave becomes its controlling terminal, so a
	// resize of the master (by conmon, say) sends it SIGWINCH.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if slave != nil {
		cmd.ExtraFiles = append(cmd.ExtraFiles, slave)
		cmd.SysProcAttr.Setctty = true
		cmd.SysProcAttr.Ctty = monitorTTYFd
		cmd.Args = append(cmd.Args, "--terminal")
	} else {
		// The process's stdio is vessel's: conmon's pipes, a terminal, files.
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	}
	err = cmd.Start()
	readyW.Close()
	goR.Close()
	if err != nil {
		return nil, fmt.Errorf("start monitor: %w", err)
	}
	h := &monitorHost{cmd: cmd, goW: goW}
	defer func() {
		if retErr != nil {
			h.abort()
		}
	}()
	if err := readyR.SetReadDeadline(time.Now().Add(monitorReadyTimeout)); err != nil {
		return nil, fmt.Errorf("start monitor: %w", err)
	}
	if _, err := io.ReadFull(readyR, make([]byte, 1)); err != nil {
		return nil, fmt.Errorf("monitor did not start (see %s): %w", cfg.monitorLog, err)
	}
	if h.startTime, err = procStart(cmd.Process.Pid); err != nil {
		return nil, fmt.Errorf("start monitor: %w", err)
	}
	log.G(ctx).WithField("pid", cmd.Process.Pid).Debug("monitor ready")
	return h, nil
}

func (h *monitorHost) pid() (int, uint64) { return h.cmd.Process.Pid, h.startTime }

// placeIn moves the monitor, which waits for start and so does nothing meanwhile, into the
// cgroups whose directories cgroups lists: those of the sandbox's VM (hostcgroup.Dirs),
// which for a container of its own are the host cgroup at its linux.cgroupsPath. So the
// host's /proc/PID/cgroup of the pid that state reports shows the container's cgroup in
// every hierarchy, as it does for runc's container process. The monitor leaves them once
// its process has exited (monitor.go), and a delete moves one that still runs out before
// the sandbox's cgroup goes (delete.go): a cgroup with a process in it cannot be removed.
// A foreground process's host, vessel itself, stays in its cgroups: it deletes the
// container it runs.
func (h *monitorHost) placeIn(cgroups []string) error {
	if err := hostcgroup.Place(h.cmd.Process.Pid, cgroups); err != nil {
		return fmt.Errorf("place the monitor of the container's process: %w", err)
	}
	return nil
}

// start releases the monitor to do its work; vessel does not wait for it (its parent
// becomes the nearest subreaper, e.g. conmon, or init).
func (h *monitorHost) start(context.Context) error {
	defer h.goW.Close()
	if _, err := h.goW.Write([]byte{'g'}); err != nil {
		return fmt.Errorf("release monitor: %w", err)
	}
	if err := h.cmd.Process.Release(); err != nil {
		return fmt.Errorf("release monitor: %w", err)
	}
	return nil
}

func (h *monitorHost) abort() {
	h.closeMaster()
	h.goW.Close()
	_ = h.cmd.Process.Kill()
	_ = h.cmd.Wait()
}

// selfHost is this vessel process standing in for a foreground process.
type selfHost struct {
	ptyMaster
	standIn
	address string
	// con is vessel's own terminal, set raw while a terminal process runs in the
	// foreground without a console socket.
	con console.Console
}

func newSelfHost(ctx context.Context, cfg hostConfig, slave *os.File) (*selfHost, error) {
	// The relay lives until the process exits, beyond the request that made it (run's
	// create is cancelled by SIGINT only until the container runs).
	relay, err := procio.Open(context.WithoutCancel(ctx), cfg.fifos)
	if err != nil {
		return nil, err
	}
	h := &selfHost{address: cfg.address, standIn: standIn{id: cfg.id, execID: cfg.execID, relay: relay, tty: slave, pollSize: slave != nil}}
	if cfg.terminal && slave == nil {
		// As with runc: when stdin is a terminal it becomes the process's (raw, resized
		// with it); otherwise the process's terminal is relayed to vessel's stdin and
		// stdout as they are.
		if con, err := console.ConsoleFromFile(os.Stdin); err == nil {
			h.con = con
			h.tty = os.Stdin
		}
	}
	return h, nil
}

func (h *selfHost) pid() (int, uint64) {
	pid := os.Getpid()
	start, _ := procStart(pid)
	return pid, start
}

func (h *selfHost) start(ctx context.Context) error {
	cl, err := shimclient.Dial(ctx, h.address)
	if err != nil {
		return err
	}
	h.cl = cl
	in, out, errOut := io.Reader(os.Stdin), io.Writer(os.Stdout), io.Writer(os.Stderr)
	switch {
	case h.con != nil:
		if err := h.con.SetRaw(); err != nil {
			return fmt.Errorf("set terminal raw: %w", err)
		}
	case h.tty != nil:
		in, out = h.tty, h.tty
	}
	h.relay.Start(in, out, errOut)
	h.resize(ctx)
	return nil
}

// wait forwards signals until the process exits and returns its exit status.
func (h *selfHost) wait(ctx context.Context) (uint32, error) {
	defer h.close()
	return h.standIn.wait(ctx)
}

// close restores vessel's terminal and releases the host's connection and pty.
func (h *selfHost) close() {
	h.restore()
	if h.cl != nil {
		h.cl.Close()
	}
	if h.tty != nil && h.tty != os.Stdin {
		h.tty.Close()
	}
}

func (h *selfHost) restore() {
	if h.con != nil {
		if err := h.con.Reset(); err != nil {
			log.L.WithError(err).Debug("reset terminal")
		}
	}
}

func (h *selfHost) abort() {
	h.closeMaster()
	h.relay.Close()
	h.close()
}
