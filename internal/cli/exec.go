package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/log"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli/v2"

	"github.com/vessel-containers/vessel/internal/oci"
	"github.com/vessel-containers/vessel/internal/procio"
	"github.com/vessel-containers/vessel/internal/shimclient"
	"github.com/vessel-containers/vessel/internal/shimproto"
)

func execCommand() *cli.Command {
	return &cli.Command{
		Name:  "exec",
		Usage: "execute new process inside the container",
		ArgsUsage: `<container-id> <command> [command options]  || -p process.json <container-id>

Where "<container-id>" is the name for the instance of the container and
"<command>" is the command to be executed in the container.`,
		Description: `The exec command runs an additional process in a created or running container, in
its VM. The process starts from the container's own process settings (user, env, cwd,
capabilities, rlimits), with args from the command line and the options below applied;
--process gives a complete process.json instead. When the process cannot be run, exec
exits 255, as runc's does.

In the foreground vessel relays stdio (or its terminal with --tty), forwards the signals
it receives to the process and exits with the process's exit status. With --detach a vessel
monitor process stands for the exec'd process: --pid-file records its pid, it exits with
the process's status; a terminal then needs --console-socket.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "console-socket", Usage: "path to an AF_UNIX socket which will receive a file descriptor referencing the master end of the console's pseudoterminal"},
			&cli.StringFlag{Name: "cwd", Usage: "current working directory in the container"},
			&cli.StringSliceFlag{Name: "env", Aliases: []string{"e"}, Usage: "set environment variables (NAME=value, repeatable)"},
			&cli.BoolFlag{Name: "tty", Aliases: []string{"t"}, Usage: "allocate a pseudo-TTY"},
			&cli.StringFlag{Name: "user", Aliases: []string{"u"}, Usage: "UID (format: <uid>[:<gid>])"},
			&cli.StringSliceFlag{Name: "additional-gids", Aliases: []string{"g"}, Usage: "additional gids (repeatable)"},
			&cli.StringFlag{Name: "process", Aliases: []string{"p"}, Usage: "path to the process.json"},
			&cli.BoolFlag{Name: "detach", Aliases: []string{"d"}, Usage: "detach from the container's process"},
			&cli.StringFlag{Name: "pid-file", Usage: "file to write the pid of the process standing for the exec'd process on the host"},
			&cli.StringFlag{Name: "process-label", Usage: "set the asm process label for the process commonly used with selinux"},
			&cli.StringFlag{Name: "apparmor", Usage: "set the apparmor profile for the process"},
			&cli.BoolFlag{Name: "no-new-privs", Usage: "set the no new privileges value for the process"},
			&cli.StringSliceFlag{Name: "cap", Aliases: []string{"c"}, Usage: "add a capability to the bounding, effective and permitted sets (repeatable)"},
			&cli.IntFlag{Name: "preserve-fds", Usage: "accepted for runc compatibility with 0 only: descriptors cannot be passed into a VM"},
			&cli.BoolFlag{Name: "ignore-paused", Usage: "allow exec in a paused container: exec waits for the container to be resumed, then runs the process"},
		},
		Action: execAction,
	}
}

// execFailedCode is vessel exec's exit status when the process could not be run, as
// runc's.
const execFailedCode = 255

// execAction runs exec; once its arguments are valid, any failure to run the process
// exits execFailedCode, as runc's exec does.
func execAction(c *cli.Context) error {
	if c.NArg() < 1 {
		return errors.New("exec: container id is required")
	}
	if n := c.Int("preserve-fds"); n != 0 {
		return fmt.Errorf("--preserve-fds %d: descriptors cannot be passed into the container's VM", n)
	}
	err := execRun(c)
	var ec cli.ExitCoder
	if err == nil || errors.As(err, &ec) {
		return err
	}
	return cli.Exit("exec failed: "+err.Error(), execFailedCode)
}

func execRun(c *cli.Context) error {
	id := c.Args().First()
	r, err := newRuntime(c)
	if err != nil {
		return err
	}
	ctx := c.Context
	ctr, err := r.load(id)
	if err != nil {
		return err
	}
	switch st := r.statusOf(ctx, ctr); st.status {
	case specs.StateRunning, specs.StateCreated:
	case oci.StatePaused:
		if !c.Bool("ignore-paused") {
			return errors.New("cannot exec in a paused container (use --ignore-paused to override)")
		}
	case specs.StateStopped:
		return errors.New("cannot exec in a stopped container")
	default:
		return fmt.Errorf("cannot exec in a %s container", st.status)
	}
	var base *specs.Process
	if ctr.Spec != nil {
		base = ctr.Spec.Process
	}
	proc, err := execProcess(c, base)
	if err != nil {
		return err
	}
	o := execOptions{detach: c.Bool("detach"), pidFile: c.String("pid-file")}
	if p := c.String("console-socket"); p != "" {
		if o.consoleSocket, err = filepath.Abs(p); err != nil {
			return fmt.Errorf("console socket: %w", err)
		}
	}
	if o.pidFile != "" {
		if o.pidFile, err = filepath.Abs(o.pidFile); err != nil {
			return fmt.Errorf("pid file: %w", err)
		}
	}
	o.sandboxID = ctr.SandboxID
	o.ignorePaused = c.Bool("ignore-paused")
	status, err := r.exec(ctx, ctr.ID, ctr.ShimAddress, proc, o)
	if err != nil {
		return err
	}
	if status != 0 {
		return cli.Exit("", int(status))
	}
	return nil
}

type execOptions struct {
	detach        bool
	consoleSocket string
	pidFile       string
	// sandboxID is the container's sandbox, whose shim answers the init log (--debug).
	sandboxID string
	// ignorePaused lets an exec into a paused container wait for the resume.
	ignorePaused bool
}

// exec runs an additional process. In the foreground it returns the process's exit
// status.
func (r *ociRuntime) exec(ctx context.Context, id, address string, proc *specs.Process, o execOptions) (_ uint32, retErr error) {
	switch {
	case proc.Terminal && o.detach && o.consoleSocket == "":
		return 0, errors.New("cannot allocate tty if vessel will detach without setting console socket")
	case !proc.Terminal && o.consoleSocket != "":
		return 0, errors.New("cannot use console socket if vessel will not allocate a tty (--tty)")
	}
	execID, err := newExecID()
	if err != nil {
		return 0, err
	}
	fifos, err := procio.MakeFIFOs(r.store.Dir(id), "exec-"+execID, proc.Terminal)
	if err != nil {
		return 0, err
	}
	host, err := newHost(ctx, r, hostConfig{
		id: id, execID: execID, address: address, fifos: fifos, terminal: proc.Terminal,
		consoleSocket: o.consoleSocket, monitorLog: r.monitorLog(id),
	}, o.detach)
	if err != nil {
		fifos.Remove()
		return 0, err
	}
	cl, err := shimclient.Dial(ctx, address)
	if err != nil {
		host.abort()
		fifos.Remove()
		return 0, err
	}
	defer cl.Close()
	created := false
	defer func() {
		if retErr == nil {
			return
		}
		if created {
			if _, err := cl.Delete(context.WithoutCancel(ctx), &taskAPI.DeleteRequest{ID: id, ExecID: execID}); err != nil {
				log.G(ctx).WithError(err).Debug("delete failed exec")
			}
		}
		host.abort()
		fifos.Remove()
	}()
	spec, err := typeurl.MarshalAnyToProto(proc)
	if err != nil {
		return 0, fmt.Errorf("encode process: %w", err)
	}
	xctx := r.withInitLog(ctx) // initlog.go
	if o.ignorePaused {
		xctx = withMetadata(xctx, shimproto.MetadataIgnorePaused)
	}
	if _, err := cl.Exec(xctx, &taskAPI.ExecProcessRequest{
		ID: id, ExecID: execID, Terminal: proc.Terminal, Spec: spec,
		Stdin: fifos.Stdin, Stdout: fifos.Stdout, Stderr: fifos.Stderr,
	}); err != nil {
		return 0, fmt.Errorf("exec in container %s: %w", id, err)
	}
	created = true
	_, err = cl.Start(ctx, &taskAPI.StartRequest{ID: id, ExecID: execID})
	r.relayInitLog(ctx, o.sandboxID, id, execID)
	if err != nil {
		return 0, fmt.Errorf("exec in container %s: %w", id, err)
	}
	if err := host.sendConsole(o.consoleSocket); err != nil {
		return 0, err
	}
	if o.pidFile != "" {
		pid, _ := host.pid()
		if err := writePidFile(o.pidFile, pid); err != nil {
			return 0, err
		}
	}
	if err := host.start(ctx); err != nil {
		return 0, err
	}
	if o.detach {
		return 0, nil
	}
	self, ok := host.(*selfHost)
	if !ok {
		return 0, fmt.Errorf("exec: foreground process has no foreground host")
	}
	status, werr := self.wait(ctx)
	if _, err := cl.Delete(context.WithoutCancel(ctx), &taskAPI.DeleteRequest{ID: id, ExecID: execID}); err != nil {
		log.G(ctx).WithError(err).Debug("delete exec")
	}
	fifos.Remove()
	if werr != nil {
		log.G(ctx).WithError(werr).Warn("wait")
	}
	return status, nil
}

func newExecID() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("exec id: %w", err)
	}
	return "exec-" + hex.EncodeToString(b), nil
}

// execProcess builds the exec'd process as runc does: --process as given, else a copy of
// the container's process with the command line and options applied.
func execProcess(c *cli.Context, base *specs.Process) (*specs.Process, error) {
	if path := c.String("process"); path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read process spec: %w", err)
		}
		var p specs.Process
		if err := json.Unmarshal(data, &p); err != nil {
			return nil, fmt.Errorf("parse process spec %s: %w", path, err)
		}
		if len(p.Args) == 0 {
			return nil, fmt.Errorf("process spec %s: args must not be empty", path)
		}
		return &p, nil
	}
	args := c.Args().Tail()
	if len(args) == 0 {
		return nil, errors.New("exec args cannot be empty")
	}
	p := &specs.Process{Cwd: "/"}
	if base != nil {
		data, err := json.Marshal(base)
		if err != nil {
			return nil, fmt.Errorf("copy process: %w", err)
		}
		p = &specs.Process{}
		if err := json.Unmarshal(data, p); err != nil {
			return nil, fmt.Errorf("copy process: %w", err)
		}
	}
	p.Args = args
	p.Terminal = c.Bool("tty")
	p.ConsoleSize = nil
	if v := c.String("cwd"); v != "" {
		p.Cwd = v
	}
	p.Env = append(p.Env, c.StringSlice("env")...)
	if v := c.String("apparmor"); v != "" {
		p.ApparmorProfile = v
	}
	if v := c.String("process-label"); v != "" {
		p.SelinuxLabel = v
	}
	if c.Bool("no-new-privs") {
		p.NoNewPrivileges = true
	}
	if caps := c.StringSlice("cap"); len(caps) > 0 {
		if p.Capabilities == nil {
			p.Capabilities = &specs.LinuxCapabilities{}
		}
		for _, cp := range caps {
			cp = strings.ToUpper(cp)
			if !strings.HasPrefix(cp, "CAP_") {
				cp = "CAP_" + cp
			}
			p.Capabilities.Bounding = append(p.Capabilities.Bounding, cp)
			p.Capabilities.Effective = append(p.Capabilities.Effective, cp)
			p.Capabilities.Permitted = append(p.Capabilities.Permitted, cp)
		}
	}
	if v := c.String("user"); v != "" {
		uid, gid, hasGID, err := parseUser(v)
		if err != nil {
			return nil, err
		}
		p.User.UID = uid
		if hasGID {
			p.User.GID = gid
		}
	}
	for _, g := range c.StringSlice("additional-gids") {
		n, err := strconv.ParseUint(g, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("--additional-gids %q: want a number", g)
		}
		p.User.AdditionalGids = append(p.User.AdditionalGids, uint32(n))
	}
	return p, nil
}

// parseUser parses runc's --user: <uid>[:<gid>], numbers only.
func parseUser(s string) (uid, gid uint32, hasGID bool, err error) {
	us, gs, hasGID := strings.Cut(s, ":")
	u, err := strconv.ParseUint(us, 10, 32)
	if err != nil {
		return 0, 0, false, fmt.Errorf("--user %q: want <uid>[:<gid>] as numbers", s)
	}
	if hasGID {
		g, err := strconv.ParseUint(gs, 10, 32)
		if err != nil {
			return 0, 0, false, fmt.Errorf("--user %q: want <uid>[:<gid>] as numbers", s)
		}
		gid = uint32(g)
	}
	return uint32(u), gid, hasGID, nil
}
