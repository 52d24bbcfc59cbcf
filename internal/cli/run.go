package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli/v2"

	"github.com/vessel-containers/vessel/internal/bundle"
	"github.com/vessel-containers/vessel/internal/oci"
)

func runCommand() *cli.Command {
	return &cli.Command{
		Name:      "run",
		Usage:     "create and run a container",
		ArgsUsage: "<container-id> [command [arg...]]",
		Description: `The run command creates the container (as "vessel create" does), starts it and, in the
foreground, waits for it: vessel relays stdin, stdout and stderr (or, for a process with a
terminal, its own terminal or the pty sent to --console-socket), forwards the signals it
receives, and exits with the container's exit status (128+N when signal N killed it). The
container is then deleted, VM and state included, unless --keep is given. While it runs,
this vessel process is the pid that state reports.

With --detach, run returns once the container runs; a vessel monitor process then stands
for it, as after create, and --rm makes that monitor delete the container when it exits.

Bundle: --bundle, else the current directory when it holds a config.json, else a built-in
busybox root filesystem (from the host's busybox-static) with a default spec, made under
--root and removed with the container. A command after the id replaces process.args; with
a bundle of yours, vessel then runs a copy of its config.json under --root, leaving yours
untouched.`,
		Flags: append(createFlags(),
			&cli.BoolFlag{Name: "detach", Aliases: []string{"d"}, Usage: "detach from the container's process"},
			&cli.BoolFlag{Name: "keep", Usage: "do not delete the container after it exits"},
			&cli.BoolFlag{Name: "rm", Usage: "delete the container when it exits (the default in the foreground; with --detach, the monitor deletes it)"},
		),
		Action: runAction,
	}
}

func runAction(c *cli.Context) error {
	if c.NArg() < 1 {
		return errors.New("run: container id is required (vessel run [--bundle DIR] ID [COMMAND...])")
	}
	id := c.Args().First()
	if err := oci.ValidateID(id); err != nil {
		return err
	}
	r, err := newRuntime(c)
	if err != nil {
		return err
	}
	o, err := createOptionsOf(c, id)
	if err != nil {
		return err
	}
	detach, keep := c.Bool("detach"), c.Bool("keep")
	if keep && c.Bool("rm") {
		return errors.New("run: --keep and --rm contradict each other")
	}
	o.detach, o.rm = detach, detach && c.Bool("rm")
	if err := r.runBundle(&o, c.IsSet("bundle"), c.Args().Slice()[1:]); err != nil {
		return err
	}
	ctx := c.Context
	// Until the container runs, SIGINT and SIGTERM abort the run (and undo the create)
	// rather than kill vessel half-way; afterwards they go to the container.
	sctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	host, err := r.create(sctx, o)
	if err != nil {
		stop()
		r.removeOwnedBundle(ctx, o)
		return err
	}
	if err := r.start(sctx, id); err != nil {
		stop()
		if derr := r.delete(ctx, id, true); derr != nil {
			log.G(ctx).WithError(derr).Warn("delete after failed start")
		}
		return err
	}
	stop()
	if detach {
		return nil
	}
	self, ok := host.(*selfHost)
	if !ok {
		return fmt.Errorf("run: foreground container %s has no foreground host", id)
	}
	status, err := self.wait(ctx)
	if err != nil {
		log.G(ctx).WithError(err).Warn("wait")
	}
	if !keep {
		if err := r.delete(ctx, id, true); err != nil {
			return err
		}
	}
	if status != 0 {
		return cli.Exit("", int(status))
	}
	return nil
}

// runBundle settles the bundle of `vessel run`: --bundle, else the current directory when
// it holds a config.json, else a built-in busybox bundle. Extra args replace
// process.args: in a bundle vessel makes, or a copy of the given bundle's config.json.
func (r *ociRuntime) runBundle(o *createOptions, bundleFlag bool, args []string) error {
	if !bundleFlag && !fileExists(filepath.Join(o.bundle, "config.json")) {
		dir, err := r.makeBundleDir(o.id)
		if err != nil {
			return err
		}
		if len(args) == 0 {
			args = []string{"sh", "-c", "echo Hello from a container in a Vessel VM; uname -srm"}
		}
		if _, err := bundle.CreateBusybox(dir, args, false); err != nil {
			os.RemoveAll(dir)
			return err
		}
		o.bundle, o.ownedBundle = dir, true
		return nil
	}
	if len(args) == 0 {
		return nil
	}
	spec, err := bundle.LoadSpec(o.bundle)
	if err != nil {
		return err
	}
	spec.Process.Args = args
	absolutize(spec, o.bundle)
	dir, err := r.makeBundleDir(o.id)
	if err != nil {
		return err
	}
	if err := bundle.WriteSpec(dir, spec); err != nil {
		os.RemoveAll(dir)
		return err
	}
	o.bundle, o.ownedBundle = dir, true
	return nil
}

func (r *ociRuntime) makeBundleDir(id string) (string, error) {
	if err := os.MkdirAll(r.bundlesDir(), 0o711); err != nil {
		return "", fmt.Errorf("create bundle dir: %w", err)
	}
	dir := filepath.Join(r.bundlesDir(), id)
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return "", fmt.Errorf("container with id exists: %s", id)
		}
		return "", fmt.Errorf("create bundle for %s: %w", id, err)
	}
	return dir, nil
}

// absolutize makes the paths of a spec that are relative to its bundle absolute, so the
// spec can live in another directory.
func absolutize(spec *specs.Spec, bundleDir string) {
	if !filepath.IsAbs(spec.Root.Path) {
		spec.Root.Path = filepath.Join(bundleDir, spec.Root.Path)
	}
	for i, m := range spec.Mounts {
		if isBindMount(m) && m.Source != "" && !filepath.IsAbs(m.Source) {
			spec.Mounts[i].Source = filepath.Join(bundleDir, m.Source)
		}
	}
}

func isBindMount(m specs.Mount) bool {
	if m.Type == "bind" {
		return true
	}
	for _, o := range m.Options {
		if o == "bind" || o == "rbind" {
			return true
		}
	}
	return false
}

// removeOwnedBundle removes a bundle run made when create failed (delete removes it
// otherwise).
func (r *ociRuntime) removeOwnedBundle(ctx context.Context, o createOptions) {
	if !o.ownedBundle {
		return
	}
	if err := os.RemoveAll(o.bundle); err != nil {
		log.G(ctx).WithError(err).Warn("remove bundle")
	}
}
