package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/containerd/console"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli/v2"

	"github.com/vessel-containers/vessel/internal/bundle"
	"github.com/vessel-containers/vessel/internal/sandbox"
)

func runCommand() *cli.Command {
	return &cli.Command{
		Name:      "run",
		Usage:     "create and run a container in a new virtual machine",
		ArgsUsage: "<container-id> [command [arg...]]",
		Description: `Boots a sandbox VM, creates the container from the OCI bundle, attaches stdio and
waits for it to exit; vessel then exits with the container's exit status (128+N when it
was killed by signal N), and the VM and all its state are removed.

Without --bundle, a built-in busybox root filesystem is used (made from the host's
busybox-static) with a default spec. A command after the id replaces process.args.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "bundle", Aliases: []string{"b"}, Usage: "path to the OCI bundle (default: built-in busybox bundle)"},
		},
		Action: runAction,
	}
}

func runAction(c *cli.Context) error {
	if c.NArg() < 1 {
		return errors.New("run: container id is required (vessel run [--bundle DIR] ID [COMMAND...])")
	}
	ctx := c.Context
	id := c.Args().First()
	if err := sandbox.ValidateID(id); err != nil {
		return err
	}
	root := c.String("root")
	bundleDir := c.String("bundle")
	var spec *specs.Spec
	if bundleDir == "" {
		// A throw-away bundle with the busybox rootfs, removed when the run ends.
		dir := filepath.Join(root, "bundles", id)
		if err := os.MkdirAll(filepath.Dir(dir), 0o711); err != nil {
			return fmt.Errorf("create bundle dir: %w", err)
		}
		if err := os.Mkdir(dir, 0o700); err != nil {
			return fmt.Errorf("create default bundle for %s: %w", id, err)
		}
		defer os.RemoveAll(dir)
		args := []string{"sh", "-c", "echo Hello from a container in a Vessel VM; uname -srm"}
		var err error
		if spec, err = bundle.CreateBusybox(dir, args, false); err != nil {
			return err
		}
		bundleDir = dir
	} else {
		abs, err := filepath.Abs(bundleDir)
		if err != nil {
			return fmt.Errorf("bundle path: %w", err)
		}
		bundleDir = abs
		if spec, err = bundle.LoadSpec(bundleDir); err != nil {
			return err
		}
	}
	if c.NArg() > 1 {
		spec.Process.Args = c.Args().Slice()[1:]
	}
	plan, err := planSandbox(c, id, bundleDir, spec)
	if err != nil {
		return err
	}
	code, err := runContainer(ctx, sandbox.Config{ID: id, Root: filepath.Join(root, "sandboxes"), VM: plan.VM, Hostname: spec.Hostname},
		sandbox.ContainerConfig{ID: id, Spec: spec, Rootfs: plan.Container.Rootfs, Stdin: true})
	if err != nil {
		return err
	}
	if code != 0 {
		return cli.Exit("", code)
	}
	return nil
}

// runContainer runs one container in a fresh sandbox with the caller's stdio and removes
// everything afterwards. It returns the container's exit status.
func runContainer(ctx context.Context, sbcfg sandbox.Config, ccfg sandbox.ContainerConfig) (code int, retErr error) {
	sb, err := sandbox.Create(ctx, sbcfg)
	if err != nil {
		return -1, err
	}
	defer func() {
		if err := sb.Delete(context.WithoutCancel(ctx)); err != nil {
			retErr = errors.Join(retErr, err)
		}
	}()

	tty := ccfg.Spec.Process.Terminal
	var con console.Console
	if tty {
		if con, err = console.ConsoleFromFile(os.Stdin); err != nil {
			return -1, fmt.Errorf("process.terminal is set but stdin is not a terminal: %w", err)
		}
		if sz, err := con.Size(); err == nil {
			ccfg.Spec.Process.ConsoleSize = &specs.Box{Height: uint(sz.Height), Width: uint(sz.Width)}
		}
		if err := con.SetRaw(); err != nil {
			return -1, fmt.Errorf("set terminal raw: %w", err)
		}
		defer func() { _ = con.Reset() }()
	}

	ctr, err := sb.CreateContainer(ctx, ccfg)
	if err != nil {
		return -1, err
	}
	streams := ctr.Attach(ctx, "", sandbox.IO{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr})
	defer streams.Close()

	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH)
	defer signal.Stop(sigs)
	stopSignals := make(chan struct{})
	defer close(stopSignals)
	go forwardSignals(ctx, ctr, con, sigs, stopSignals)

	if err := ctr.Start(ctx); err != nil {
		return -1, err
	}
	code, err = ctr.Wait(ctx, "")
	if err != nil {
		return -1, err
	}
	// Report the exit only after all output reached us.
	if err := streams.Wait(); err != nil {
		log.G(ctx).WithError(err).Warn("stdio")
	}
	return code, nil
}

// forwardSignals relays signals to the container's init process, and terminal size changes
// to its terminal, until stop is closed.
func forwardSignals(ctx context.Context, ctr *sandbox.Container, con console.Console, sigs <-chan os.Signal, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case s := <-sigs:
			sig, _ := s.(syscall.Signal)
			if sig == syscall.SIGWINCH {
				if con == nil {
					continue
				}
				if sz, err := con.Size(); err == nil {
					if err := ctr.ResizeTTY(ctx, "", uint32(sz.Height), uint32(sz.Width)); err != nil {
						log.G(ctx).WithError(err).Debug("resize terminal")
					}
				}
				continue
			}
			if err := ctr.Kill(ctx, "", sig, false); err != nil {
				log.G(ctx).WithError(err).WithField("signal", sig).Warn("forward signal")
			}
		}
	}
}
