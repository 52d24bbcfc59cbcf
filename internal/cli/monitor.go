package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/log"
	"github.com/urfave/cli/v2"

	"github.com/vessel-containers/vessel/internal/hostcgroup"
	"github.com/vessel-containers/vessel/internal/procio"
	"github.com/vessel-containers/vessel/internal/shimclient"
)

// standIn is the work of a process host while its process runs: it relays the process's
// stdio, passes the signals it receives on to the process, follows terminal size changes,
// and waits for the exit.
type standIn struct {
	id, execID string
	relay      *procio.Relay
	// tty is the terminal whose size the process's terminal follows (the pty slave of a
	// console socket, or vessel's own terminal); nil without a terminal.
	tty *os.File
	// pollSize: tty is not our controlling terminal, so no SIGWINCH tells of a resize
	// (a foreground process with a console socket); its size is polled instead.
	pollSize bool
	cl       *shimclient.Client
}

// sizePollInterval is how often a pty that sends no SIGWINCH is checked for a new size.
const sizePollInterval = 250 * time.Millisecond

// forwardedSignals are the signals a host passes on to its process: what a user or a tool
// sends to the pid it was told is the container's.
func forwardedSignals() []os.Signal {
	return []os.Signal{syscall.SIGHUP, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGALRM, syscall.SIGTERM}
}

// resize copies the terminal's size to the process's terminal in the guest.
func (s *standIn) resize(ctx context.Context) {
	if s.tty == nil {
		return
	}
	size, err := procio.SizeOf(s.tty)
	if err != nil || size.Rows == 0 || size.Cols == 0 {
		return
	}
	if _, err := s.cl.ResizePty(ctx, &taskAPI.ResizePtyRequest{ID: s.id, ExecID: s.execID, Width: uint32(size.Cols), Height: uint32(size.Rows)}); err != nil {
		log.G(ctx).WithError(err).Debug("resize terminal")
	}
}

// wait blocks until the process exited and its output is drained, forwarding signals
// meanwhile, and returns the exit status (128+N when signal N killed it). When the shim
// goes away the process is lost with it: 137, as for a killed VM.
func (s *standIn) wait(ctx context.Context) (uint32, error) {
	sigs := make(chan os.Signal, 32)
	signal.Notify(sigs, append(forwardedSignals(), syscall.SIGWINCH, syscall.SIGPIPE)...)
	defer signal.Stop(sigs)
	fctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.forward(fctx, sigs)
	}()
	if s.pollSize && s.tty != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.followSize(fctx)
		}()
	}
	defer func() {
		cancel()
		wg.Wait()
	}()
	resp, err := s.cl.Wait(ctx, &taskAPI.WaitRequest{ID: s.id, ExecID: s.execID})
	if err != nil {
		s.relay.Close()
		return 128 + uint32(syscall.SIGKILL), fmt.Errorf("wait for %s: %w", s.name(), err)
	}
	s.relay.Wait()
	return resp.ExitStatus, nil
}

func (s *standIn) name() string {
	if s.execID == "" {
		return "container " + s.id
	}
	return fmt.Sprintf("exec %s in container %s", s.execID, s.id)
}

// followSize resizes the process's terminal whenever the tty's size changes, until ctx
// ends.
func (s *standIn) followSize(ctx context.Context) {
	last, _ := procio.SizeOf(s.tty)
	t := time.NewTicker(sizePollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if size, err := procio.SizeOf(s.tty); err == nil && size != last {
				last = size
				s.resize(ctx)
			}
		}
	}
}

// forward passes signals on until ctx ends.
func (s *standIn) forward(ctx context.Context, sigs <-chan os.Signal) {
	for {
		select {
		case <-ctx.Done():
			return
		case sig := <-sigs:
			switch sig {
			case syscall.SIGWINCH:
				s.resize(ctx)
				continue
			case syscall.SIGPIPE:
				// The reader of our output went away; the relay sees EPIPE and drains.
				continue
			case syscall.SIGHUP:
				if s.tty != nil && s.tty != os.Stdin {
					// Our pty's master was closed: not a signal meant for the process.
					continue
				}
			}
			n, _ := sig.(syscall.Signal)
			if _, err := s.cl.Kill(ctx, &taskAPI.KillRequest{ID: s.id, ExecID: s.execID, Signal: uint32(n)}); err != nil {
				log.G(ctx).WithError(err).WithField("signal", sig).Debug("forward signal")
			}
		}
	}
}

func monitorCommand() *cli.Command {
	return &cli.Command{
		Name:   "monitor",
		Hidden: true,
		Usage:  "(internal) stand on the host for a detached container process",
		Description: `vessel starts this process itself for create, run --detach and exec --detach; it is
not meant to be run by hand. It is the pid that state reports and --pid-file records: it
relays the process's stdio (vessel's stdio at create, or the pty whose master went to the
console socket), forwards SIGHUP, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM and SIGTERM to
the process, follows resizes of the pty (SIGWINCH), and exits with the process's exit
status once it exited and its output drained. It logs to --log, never to its stdio.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "address", Required: true, Usage: "address of the shim"},
			&cli.StringFlag{Name: "id", Required: true, Usage: "container id"},
			&cli.StringFlag{Name: "exec-id", Usage: "exec id (empty: the init process)"},
			&cli.StringFlag{Name: "stdin", Required: true, Usage: "stdin FIFO"},
			&cli.StringFlag{Name: "stdout", Required: true, Usage: "stdout FIFO"},
			&cli.StringFlag{Name: "stderr", Usage: "stderr FIFO (none with a terminal)"},
			&cli.BoolFlag{Name: "terminal", Usage: "descriptor 5 is the pty slave"},
			&cli.BoolFlag{Name: "rm", Usage: "delete the container when the process exits"},
		},
		Action: monitorAction,
	}
}

// monitorAction reports failures in its log only: its stderr may be the container's.
func monitorAction(c *cli.Context) error {
	ctx := c.Context
	code, err := monitor(ctx, c)
	if err != nil {
		log.G(ctx).WithError(err).Error("monitor")
	}
	if code != 0 {
		return cli.Exit("", code)
	}
	return nil
}

func monitor(ctx context.Context, c *cli.Context) (int, error) {
	ready := os.NewFile(monitorReadyFd, "ready")
	goR := os.NewFile(monitorGoFd, "go")
	defer goR.Close()
	id, execID := c.String("id"), c.String("exec-id")
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("container", id).WithField("exec", execID).WithField("pid", os.Getpid()))
	// Where the monitor was started: it returns there once its process has exited, out of
	// the sandbox's cgroups that create places it in (host.go's placeIn).
	origin, err := hostcgroup.Own()
	if err != nil {
		ready.Close()
		return 1, err
	}
	fifos := procio.FIFOs{Stdin: c.String("stdin"), Stdout: c.String("stdout"), Stderr: c.String("stderr")}
	relay, err := procio.Open(ctx, fifos)
	if err != nil {
		ready.Close()
		return 1, err
	}
	_, err = ready.Write([]byte{'r'})
	ready.Close()
	if err != nil {
		relay.Close()
		return 1, fmt.Errorf("report ready: %w", err)
	}
	if _, err := io.ReadFull(goR, make([]byte, 1)); err != nil {
		// vessel gave up on the process before it existed.
		relay.Close()
		return 1, nil
	}
	cl, err := shimclient.Dial(ctx, c.String("address"))
	if err != nil {
		relay.Close()
		return 128 + int(syscall.SIGKILL), err
	}
	defer cl.Close()
	s := standIn{id: id, execID: execID, relay: relay, cl: cl}
	in, out, errOut := io.Reader(os.Stdin), io.Writer(os.Stdout), io.Writer(os.Stderr)
	if c.Bool("terminal") {
		// Non-blocking, so closing it interrupts a read.
		if err := syscall.SetNonblock(monitorTTYFd, true); err != nil {
			return 1, fmt.Errorf("pty: %w", err)
		}
		s.tty = os.NewFile(monitorTTYFd, "pty")
		defer s.tty.Close()
		in, out, errOut = s.tty, s.tty, io.Discard
	}
	relay.Start(in, out, errOut)
	s.resize(ctx)
	status, werr := s.wait(ctx)
	if werr != nil {
		log.G(ctx).WithError(werr).Warn("wait")
	}
	log.G(ctx).WithField("status", status).Debug("process exited")
	if err := hostcgroup.Place(os.Getpid(), origin); err != nil {
		log.G(ctx).WithError(err).Warn("leave the sandbox's cgroup")
	}
	if execID != "" {
		if _, err := cl.Delete(ctx, &taskAPI.DeleteRequest{ID: id, ExecID: execID}); err != nil {
			log.G(ctx).WithError(err).Debug("delete exec")
		}
		fifos.Remove()
	}
	if c.Bool("rm") {
		r, err := newRuntime(c)
		if err == nil {
			err = r.delete(ctx, id, true)
		}
		if err != nil {
			log.G(ctx).WithError(err).Warn("remove container")
		}
	}
	return int(status), nil
}
