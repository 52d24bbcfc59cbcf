package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/containerd/console"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	"github.com/urfave/cli/v2"
	"google.golang.org/grpc/status"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
	"github.com/vessel-containers/vessel/internal/guesttext"
	"github.com/vessel-containers/vessel/internal/persist"
	"github.com/vessel-containers/vessel/internal/unixsock"
)

func debugCommand() *cli.Command {
	return &cli.Command{
		Name:  "debug",
		Usage: "a shell or a command in a sandbox's guest, outside every container",
		Description: `The guest must allow it: the sandbox was created with agent.debug_console_enabled =
true, and its guest image has a shell (vessel image build --debug-console). The sandbox's
shim relays the session to the agent over its own connection (debug.sock in the sandbox's
state directory).`,
		Subcommands: []*cli.Command{debugConsoleCommand(), debugExecCommand()},
	}
}

// sandboxRootFlag selects where sandboxes keep state.
var sandboxRootFlag = &cli.StringFlag{
	Name:  "sandbox-root",
	Usage: "directory of the sandbox state directories (default: ROOT/sandboxes, which for the default --root is where containerd's shims keep them too)",
}

// sandboxRoot is --sandbox-root, else the sandboxes directory under --root.
func sandboxRoot(c *cli.Context) (string, error) {
	if p := c.String(sandboxRootFlag.Name); p != "" {
		return filepath.Abs(p)
	}
	root, err := stateRoot(c)
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "sandboxes"), nil
}

func debugConsoleCommand() *cli.Command {
	return &cli.Command{
		Name:      "console",
		Usage:     "an interactive shell in the guest (a terminal when stdin is one)",
		ArgsUsage: "SANDBOX",
		Flags:     []cli.Flag{sandboxRootFlag},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return fmt.Errorf("debug console: want exactly one SANDBOX argument: %w", errdefs.ErrInvalidArgument)
			}
			_, isTerminal := terminalOf(os.Stdin)
			return runDebug(c, c.Args().First(), nil, isTerminal)
		},
	}
}

func debugExecCommand() *cli.Command {
	return &cli.Command{
		Name:      "exec",
		Usage:     "run one command in the guest and exit with its status",
		ArgsUsage: "SANDBOX -- COMMAND [ARG...]",
		Flags: []cli.Flag{
			sandboxRootFlag,
			&cli.BoolFlag{Name: "tty", Aliases: []string{"t"}, Usage: "run the command on a terminal (stdin must be one)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() < 2 {
				return fmt.Errorf("debug exec: want SANDBOX and a command: %w", errdefs.ErrInvalidArgument)
			}
			args := c.Args().Slice()
			id, cmd := args[0], args[1:]
			// Flag parsing stops at SANDBOX, so the "--" before the command is still there.
			if cmd[0] == "--" {
				cmd = cmd[1:]
			}
			if len(cmd) == 0 {
				return fmt.Errorf("debug exec: want a command after SANDBOX: %w", errdefs.ErrInvalidArgument)
			}
			return runDebug(c, id, cmd, c.Bool("tty"))
		},
	}
}

// terminalOf returns f as a console when it is a terminal.
func terminalOf(f *os.File) (console.Console, bool) {
	con, err := console.ConsoleFromFile(f)
	if err != nil {
		return nil, false
	}
	return con, true
}

// dialDebug connects to the debug relay of sandbox id under root.
func dialDebug(root, id string) (agentv1.DebugService, io.Closer, error) {
	dir := filepath.Join(root, id)
	st, err := persist.Load(dir)
	if errdefs.IsNotFound(err) {
		return nil, nil, fmt.Errorf("sandbox %s: no state under %s: %w", id, root, errdefs.ErrNotFound)
	}
	if err != nil {
		return nil, nil, err
	}
	if !st.DebugConsole {
		return nil, nil, fmt.Errorf("sandbox %s: the debug console is off: the sandbox was created without agent.debug_console_enabled = true: %w", id, errdefs.ErrFailedPrecondition)
	}
	conn, err := unixsock.Dial(context.Background(), &net.Dialer{}, filepath.Join(dir, persist.DebugSocketName))
	if err != nil {
		return nil, nil, fmt.Errorf("sandbox %s: debug console: %w", id, err)
	}
	client := ttrpc.NewClient(conn)
	return agentv1.NewDebugClient(client), client, nil
}

// guestErr turns an error from the relay into a native one, with the agent's message
// escaped (it is guest text).
func guestErr(what string, err error) error {
	if st, ok := status.FromError(err); ok {
		err = errgrpc.ToNative(status.Error(st.Code(), guesttext.Quote(st.Message(), 0)))
	}
	return fmt.Errorf("%s: %w", what, err)
}

// runDebug runs args (the guest's shell when empty) in sandbox id's guest with vessel's
// stdio, on a terminal when tty is set, and exits with its status.
func runDebug(c *cli.Context, id string, args []string, tty bool) error {
	ctx := c.Context
	root, err := sandboxRoot(c)
	if err != nil {
		return err
	}
	dbg, closer, err := dialDebug(root, id)
	if err != nil {
		return err
	}
	defer closer.Close()

	var con console.Console
	stdio := &agentv1.StdioConfig{Stdin: true}
	if tty {
		var ok bool
		if con, ok = terminalOf(os.Stdin); !ok {
			return fmt.Errorf("debug: --tty needs a terminal on stdin: %w", errdefs.ErrInvalidArgument)
		}
		stdio.Terminal = true
		if size, err := con.Size(); err == nil {
			stdio.ConsoleHeight, stdio.ConsoleWidth = uint32(size.Height), uint32(size.Width)
		}
	}
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		return fmt.Errorf("debug: exec id: %w", err)
	}
	execID := "debug-" + hex.EncodeToString(b)
	if _, err := dbg.DebugStart(ctx, &agentv1.DebugStartRequest{ExecId: execID, Args: args, Stdio: stdio}); err != nil {
		return guestErr("debug: start", err)
	}
	log.G(ctx).WithField("sandbox", id).WithField("exec", execID).Debug("debug process started")
	code, err := relayDebug(ctx, dbg, execID, con)
	if err != nil {
		// Nothing is left running in the guest for an operator who is gone.
		if _, kerr := dbg.DebugSignal(context.WithoutCancel(ctx), &agentv1.DebugSignalRequest{ExecId: execID, Signal: uint32(syscall.SIGKILL)}); kerr != nil {
			log.G(ctx).WithError(kerr).Debug("kill debug process")
		}
		return err
	}
	if code != 0 {
		return cli.Exit("", code)
	}
	return nil
}

// relayDebug copies vessel's stdio to and from the debug process until it exited and its
// output is read, and returns its exit status. With con (a terminal) the terminal is raw
// meanwhile and its size follows vessel's. Signals that would end vessel are passed on
// instead.
func relayDebug(ctx context.Context, dbg agentv1.DebugService, execID string, con console.Console) (int, error) {
	if con != nil {
		if err := con.SetRaw(); err != nil {
			return 0, fmt.Errorf("set terminal raw: %w", err)
		}
		defer func() {
			if err := con.Reset(); err != nil {
				log.G(ctx).WithError(err).Debug("reset terminal")
			}
		}()
	}
	stop := make(chan struct{})
	var helpers sync.WaitGroup
	defer func() {
		close(stop)
		helpers.Wait()
	}()

	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGWINCH, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	defer signal.Stop(sigs)
	helpers.Add(1)
	go func() {
		defer helpers.Done()
		for {
			select {
			case <-stop:
				return
			case sig := <-sigs:
				if sig == syscall.SIGWINCH {
					if con == nil {
						continue
					}
					if size, err := con.Size(); err == nil {
						if _, err := dbg.DebugResize(ctx, &agentv1.DebugResizeRequest{ExecId: execID, Row: uint32(size.Height), Column: uint32(size.Width)}); err != nil {
							log.G(ctx).WithError(err).Debug("debug: resize")
						}
					}
					continue
				}
				if _, err := dbg.DebugSignal(ctx, &agentv1.DebugSignalRequest{ExecId: execID, Signal: uint32(sig.(syscall.Signal))}); err != nil {
					log.G(ctx).WithError(err).Debug("debug: forward signal")
				}
			}
		}
	}()

	// Stdin is read until EOF. A read of vessel's stdin cannot be interrupted: the copier
	// ends at EOF or with vessel.
	go func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := os.Stdin.Read(buf)
			if n > 0 {
				if _, werr := dbg.DebugWriteStdin(ctx, &agentv1.DebugWriteRequest{ExecId: execID, Data: buf[:n]}); werr != nil {
					return
				}
			}
			if err != nil {
				if con == nil {
					_, _ = dbg.DebugCloseStdin(ctx, &agentv1.DebugProcessRequest{ExecId: execID})
				}
				return
			}
		}
	}()

	// The wait is pending for the whole session: if vessel dies, the relay sees the call
	// go and kills the guest process. It ends when the process exits or the connection
	// closes (runDebug closes it).
	type waitResult struct {
		resp *agentv1.WaitProcessResponse
		err  error
	}
	waited := make(chan waitResult, 1)
	go func() {
		resp, err := dbg.DebugWait(ctx, &agentv1.DebugProcessRequest{ExecId: execID})
		waited <- waitResult{resp, err}
	}()

	outErrs := make(chan error, 2)
	copyOut := func(read func(context.Context, *agentv1.DebugReadRequest) (*agentv1.ReadStreamResponse, error), w io.Writer) {
		for {
			r, err := read(ctx, &agentv1.DebugReadRequest{ExecId: execID})
			if err != nil {
				outErrs <- guestErr("debug: read output", err)
				return
			}
			if r.GetEof() {
				outErrs <- nil
				return
			}
			if _, err := w.Write(r.GetData()); err != nil {
				outErrs <- fmt.Errorf("debug: write output: %w", err)
				return
			}
		}
	}
	streams := 1
	go copyOut(dbg.DebugReadStdout, os.Stdout)
	if con == nil {
		streams++
		go copyOut(dbg.DebugReadStderr, os.Stderr)
	}
	var errs []error
	for range streams {
		if err := <-outErrs; err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	w := <-waited
	if w.err != nil {
		return 0, guestErr("debug: wait", w.err)
	}
	return int(w.resp.GetStatus()), nil
}
