package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/log"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli/v2"

	"github.com/vessel-containers/vessel/internal/atomicfile"
	"github.com/vessel-containers/vessel/internal/bundle"
	"github.com/vessel-containers/vessel/internal/containerid"
	"github.com/vessel-containers/vessel/internal/hooks"
	"github.com/vessel-containers/vessel/internal/hostcgroup"
	"github.com/vessel-containers/vessel/internal/oci"
	"github.com/vessel-containers/vessel/internal/procio"
	"github.com/vessel-containers/vessel/internal/shimclient"
	"github.com/vessel-containers/vessel/internal/store"
)

// createFlags are the flags create and run share, as runc names them.
func createFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "bundle", Aliases: []string{"b"}, Usage: "path to the root of the bundle directory (default: the current directory)"},
		&cli.StringFlag{Name: "console-socket", Usage: "path to an AF_UNIX socket which will receive a file descriptor referencing the master end of the console's pseudoterminal"},
		&cli.StringFlag{Name: "pid-file", Usage: "file to write the pid of the process standing for the container on the host"},
		&cli.BoolFlag{Name: "no-pivot", Usage: "accepted for runc compatibility; the guest always pivots into the root filesystem"},
		&cli.BoolFlag{Name: "no-new-keyring", Usage: "accepted for runc compatibility; the container runs in its own VM, whose kernel keyring it never shares with the host"},
		&cli.IntFlag{Name: "preserve-fds", Usage: "accepted for runc compatibility with 0 only: descriptors cannot be passed into a VM"},
	}
}

func createCommand() *cli.Command {
	return &cli.Command{
		Name:      "create",
		Usage:     "create a container",
		ArgsUsage: "<container-id>",
		Description: `The create command creates an instance of a container for a bundle: it starts (or joins)
the sandbox's shim, which boots the VM, and creates the container in it without starting
its process. The bundle is a directory with a specification file named config.json and a
root filesystem. Run the process with "vessel start".

The pid that state reports and --pid-file records belongs to a host process that stands
for the container (vessel monitor): it holds the process's stdio (vessel's stdio, or the
pty whose master went to --console-socket), passes signals sent to it on to the container,
and exits with the container's exit status. prestart, createRuntime and createContainer
hooks run on the host, in that order, before create returns; if one fails the container is
destroyed and the poststop hooks run.`,
		Flags: createFlags(),
		Action: containerAction(func(c *cli.Context, r *ociRuntime, id string) error {
			o, err := createOptionsOf(c, id)
			if err != nil {
				return err
			}
			o.detach = true
			_, err = r.create(c.Context, o)
			return err
		}),
	}
}

// oneArg returns the single container-id argument.
func oneArg(c *cli.Context) (string, error) {
	if c.NArg() != 1 {
		return "", fmt.Errorf("%s: want exactly one argument, the container id (got %d)", c.Command.Name, c.NArg())
	}
	return c.Args().First(), nil
}

// containerAction is the Action of a command whose one argument is a container id: it
// opens the runtime and calls act with it and the id.
func containerAction(act func(c *cli.Context, r *ociRuntime, id string) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		id, err := oneArg(c)
		if err != nil {
			return err
		}
		r, err := newRuntime(c)
		if err != nil {
			return err
		}
		return act(c, r, id)
	}
}

// createOptions are the inputs of the create operation.
type createOptions struct {
	id, bundle    string
	consoleSocket string
	pidFile       string
	// detach: a monitor process stands for the container; else this vessel does and
	// create returns the selfHost to wait on.
	detach bool
	// rm: the monitor deletes the container when it exits (run --detach --rm).
	rm bool
	// ownedBundle: vessel made the bundle and removes it with the container.
	ownedBundle bool
}

func createOptionsOf(c *cli.Context, id string) (createOptions, error) {
	o := createOptions{id: id, bundle: c.String("bundle"), pidFile: c.String("pid-file")}
	if n := c.Int("preserve-fds"); n != 0 {
		return o, fmt.Errorf("--preserve-fds %d: descriptors cannot be passed into the container's VM", n)
	}
	var err error
	if o.bundle == "" {
		if o.bundle, err = os.Getwd(); err != nil {
			return o, fmt.Errorf("bundle: %w", err)
		}
	}
	if o.bundle, err = filepath.Abs(o.bundle); err != nil {
		return o, fmt.Errorf("bundle: %w", err)
	}
	if p := c.String("console-socket"); p != "" {
		if o.consoleSocket, err = filepath.Abs(p); err != nil {
			return o, fmt.Errorf("console socket: %w", err)
		}
	}
	if o.pidFile != "" {
		if o.pidFile, err = filepath.Abs(o.pidFile); err != nil {
			return o, fmt.Errorf("pid file: %w", err)
		}
	}
	return o, nil
}

// shimCallTimeout bounds one task API call; Create boots a VM (seconds under TCG).
const shimCallTimeout = 3 * time.Minute

// create runs the OCI create operation. It returns the process host: the caller of a
// foreground create waits on it.
func (r *ociRuntime) create(ctx context.Context, o createOptions) (_ processHost, retErr error) {
	if err := containerid.Validate(o.id); err != nil {
		return nil, err
	}
	spec, err := bundle.LoadSpec(o.bundle)
	if err != nil {
		return nil, err
	}
	terminal := spec.Process.Terminal
	switch {
	case terminal && o.detach && o.consoleSocket == "":
		return nil, errors.New("cannot allocate tty if vessel will detach without setting console socket")
	case !terminal && o.consoleSocket != "":
		return nil, errors.New("cannot use console socket if vessel will not allocate a tty (process.terminal is false)")
	}
	if err := checkCgroupsPath(spec, r.systemdCgroup, hostcgroup.SystemdRunning()); err != nil {
		return nil, err
	}
	if err := checkCgroupNotFrozen(spec, r.systemdCgroup, cgroupRoot); err != nil {
		return nil, err
	}
	warnCgroupNotEmpty(ctx, spec, r.systemdCgroup, cgroupRoot)
	_, sandboxID, err := oci.Identify(o.id, spec.Annotations)
	if err != nil {
		return nil, err
	}
	shimBin, err := shimclient.FindBinary()
	if err != nil {
		return nil, err
	}

	lock, err := r.store.Create(o.id)
	if err != nil {
		return nil, err
	}
	defer lock.Unlock()
	dir := r.store.Dir(o.id)
	c := &store.Container{
		ID: o.id, SandboxID: sandboxID, Bundle: o.bundle, Rootfs: bundle.RootfsPath(o.bundle, spec),
		Created: time.Now().UTC(), Status: store.Creating, OwnedBundle: o.ownedBundle, Spec: spec,
	}
	// The shim client outlives the undo steps, which use it.
	var cl *shimclient.Client
	defer func() {
		if cl != nil {
			cl.Close()
		}
	}()
	// Undo steps run in reverse order when create fails.
	var undo []func(context.Context)
	defer func() {
		if retErr == nil {
			return
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shimExitTimeout)
		defer cancel()
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i](cctx)
		}
		if err := r.store.Remove(o.id); err != nil {
			log.G(ctx).WithError(err).Warn("remove state of failed create")
		}
	}()
	if err := r.store.Save(c); err != nil {
		return nil, err
	}

	address, err := shimclient.Start(ctx, r.shimConfig(shimBin, c))
	if err != nil {
		return nil, err
	}
	c.ShimAddress = address
	if cl, err = shimclient.Dial(ctx, address); err != nil {
		return nil, err
	}
	// The shim's pid lets delete wait for it to end, and kill it when it hangs.
	resp, err := cl.Connect(ctx, &taskAPI.ConnectRequest{ID: o.id})
	if err != nil {
		return nil, fmt.Errorf("connect to shim: %w", err)
	}
	c.ShimPid = int(resp.ShimPid)
	if c.ShimPidStart, err = procStart(c.ShimPid); err != nil {
		return nil, fmt.Errorf("shim: %w", err)
	}
	undo = append(undo, func(ctx context.Context) { r.releaseShim(ctx, c, cl) })
	if err := r.store.Save(c); err != nil {
		return nil, err
	}

	fifos, err := procio.MakeFIFOs(dir, "init", terminal)
	if err != nil {
		return nil, err
	}
	host, err := newHost(ctx, r, hostConfig{
		id: o.id, address: address, fifos: fifos, terminal: terminal, consoleSocket: o.consoleSocket,
		rm: o.rm, monitorLog: r.monitorLog(o.id),
	}, o.detach)
	if err != nil {
		return nil, err
	}
	undo = append(undo, func(context.Context) { host.abort() })
	c.Pid, c.PidStart = host.pid()
	if err := r.store.Save(c); err != nil {
		return nil, err
	}

	req := &taskAPI.CreateTaskRequest{
		ID: o.id, Bundle: o.bundle, Terminal: terminal,
		Stdin: fifos.Stdin, Stdout: fifos.Stdout, Stderr: fifos.Stderr,
	}
	if r.config != "" {
		if req.Options, err = typeurl.MarshalAnyToProto(&runtimeoptions.Options{ConfigPath: r.config}); err != nil {
			return nil, fmt.Errorf("encode runtime options: %w", err)
		}
	}
	cctx, cancel := context.WithTimeout(r.withInitLog(ctx), shimCallTimeout) // initlog.go
	_, err = cl.Create(cctx, req)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("create container %s: %w", o.id, err)
	}
	r.relayInitLog(ctx, sandboxID, o.id, "")
	undo = append(undo, func(ctx context.Context) {
		if _, err := cl.Delete(ctx, &taskAPI.DeleteRequest{ID: o.id}); err != nil {
			log.G(ctx).WithError(err).Warn("delete container after failed create")
		}
		// The spec: a failed create hook destroys the container, then poststop hooks run.
		r.runPoststop(ctx, c)
	})
	if m, ok := host.(*monitorHost); ok {
		cgroups, err := hostcgroup.Dirs(filepath.Join(r.sandboxRoot(), sandboxID))
		if err != nil {
			return nil, err
		}
		// Ended (and reaped) before the container goes, which removes the sandbox's cgroup.
		undo = append(undo, func(context.Context) { m.abort() })
		if err := m.placeIn(cgroups); err != nil { // host.go
			return nil, err
		}
	}
	if err := host.sendConsole(o.consoleSocket); err != nil {
		return nil, err
	}
	st := ociState(c, specs.StateCreating, c.Pid)
	for _, k := range []hooks.Kind{hooks.Prestart, hooks.CreateRuntime, hooks.CreateContainer} {
		if err := hooks.Run(ctx, k, hooks.Of(spec, k), st); err != nil {
			return nil, err
		}
	}
	if o.pidFile != "" {
		if err := writePidFile(o.pidFile, c.Pid); err != nil {
			return nil, err
		}
		undo = append(undo, func(context.Context) { os.Remove(o.pidFile) })
	}
	c.Status = store.Created
	if err := r.store.Save(c); err != nil {
		return nil, err
	}
	if err := host.start(ctx); err != nil {
		return nil, err
	}
	log.G(ctx).WithField("container", o.id).WithField("pid", c.Pid).Debug("created")
	return host, nil
}

// monitorLog is where the monitors of a container log, unless --log names a file.
func (r *ociRuntime) monitorLog(id string) string {
	if r.log != "" {
		return r.log
	}
	return filepath.Join(r.store.Dir(id), "monitor.log")
}

// writePidFile writes pid atomically, as runc does.
func writePidFile(path string, pid int) error {
	if err := atomicfile.WriteFile(path, []byte(strconv.Itoa(pid)), 0o644); err != nil {
		return fmt.Errorf("write pid file: %w", err)
	}
	return nil
}

// runPoststop runs the poststop hooks; failures are warnings, as the spec says.
func (r *ociRuntime) runPoststop(ctx context.Context, c *store.Container) {
	if err := hooks.Run(ctx, hooks.Poststop, hooks.Of(c.Spec, hooks.Poststop), ociState(c, specs.StateStopped, 0)); err != nil {
		log.G(ctx).WithError(err).Warn("poststop hook failed")
	}
}
