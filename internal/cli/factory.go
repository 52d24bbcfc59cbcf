package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/urfave/cli/v2"

	"github.com/vessel-containers/vessel/internal/config"
	"github.com/vessel-containers/vessel/internal/factory"
)

// FactoryCommand is `vessel factory init|status|destroy`: the VM template and the VM cache
// server (package factory).
func FactoryCommand() *cli.Command {
	return &cli.Command{
		Name:  "factory",
		Usage: "manage the VM factory: a VM template and a cache of booted VMs",
		Description: `With factory.enable_template, sandboxes start from a template VM (saved once with its
agent up) instead of booting; with factory.vm_cache_number > 0, they take an already
booted VM from the cache server that "vessel factory init --cache N" runs. Either falls
back to a normal boot when it cannot serve a sandbox.`,
		Subcommands: []*cli.Command{factoryInitCommand(), factoryStatusCommand(), factoryDestroyCommand()},
	}
}

func factoryInitCommand() *cli.Command {
	return &cli.Command{
		Name:  "init",
		Usage: "build the template and, with --cache, serve the VM cache in the foreground",
		Description: `Builds (or rebuilds) the template when factory.enable_template is set. With --cache N
(default factory.vm_cache_number), it then keeps N VMs booted, from the template when there
is one, and serves them on factory.vm_cache_endpoint until SIGINT or SIGTERM, which stop
the VMs still in the cache (not those handed to sandboxes). Handed-out VMs stay children
of the server until they exit: run it under a service manager that leaves them alone when
it stops the server (systemd: KillMode=process).`,
		Flags: []cli.Flag{
			factoryConfigFlag(),
			&cli.IntFlag{Name: "cache", Usage: "VMs to keep booted (default: factory.vm_cache_number)", Value: -1},
		},
		Action: func(c *cli.Context) error {
			cfg, host, err := factoryConfig(c)
			if err != nil {
				return err
			}
			n := int(cfg.Factory.VMCacheNumber)
			if c.Int("cache") >= 0 {
				n = c.Int("cache")
			}
			tpl := cfg.Factory.EnableTemplate
			if !tpl && n == 0 {
				return errors.New("factory init: nothing to do: set factory.enable_template or factory.vm_cache_number, or pass --cache N")
			}
			if tpl {
				if reason := factory.TemplateUnsupported(&cfg.Hypervisor); reason != "" {
					return fmt.Errorf("factory init: %s", reason)
				}
			}
			f := factory.New(factory.ConfigFor(cfg, host, tpl, n > 0))
			ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			w := c.App.Writer
			if tpl {
				begin := time.Now()
				if err := f.BuildTemplate(ctx); err != nil {
					return fmt.Errorf("factory init: %w", err)
				}
				fmt.Fprintf(w, "template built in %s at %s\n", time.Since(begin).Round(time.Millisecond), cfg.Factory.TemplatePath)
			}
			if n == 0 {
				return nil
			}
			srv, err := f.NewServer(n)
			if err != nil {
				return fmt.Errorf("factory init: %w", err)
			}
			return srv.Serve(ctx, func() {
				fmt.Fprintf(w, "vm cache: keeping %d VMs booted, serving %s (stop with SIGTERM)\n", n, cfg.Factory.VMCacheEndpoint)
			})
		},
	}
}

func factoryStatusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show the template and the VM cache",
		Flags: []cli.Flag{
			factoryConfigFlag(),
		},
		Action: func(c *cli.Context) error {
			cfg, f, err := factoryAdmin(c)
			if err != nil {
				return err
			}
			tpl, err := f.TemplateInfo(c.Context)
			if err != nil {
				return fmt.Errorf("factory status: %w", err)
			}
			w := c.App.Writer
			fmt.Fprintf(w, "configuration: enable_template = %t, vm_cache_number = %d\n", cfg.Factory.EnableTemplate, cfg.Factory.VMCacheNumber)
			factory.WriteStatus(w, tpl, f.CacheInfo(c.Context), time.Now())
			return nil
		},
	}
}

func factoryDestroyCommand() *cli.Command {
	return &cli.Command{
		Name:  "destroy",
		Usage: "stop the VM cache server and remove the template",
		Description: `Sends SIGTERM to a running cache server (which stops the VMs it still holds) and waits
for it, then removes the template, its tmpfs and its lock file. Sandboxes already running,
from the template or the cache, keep running.`,
		Flags: []cli.Flag{
			factoryConfigFlag(),
		},
		Action: func(c *cli.Context) error {
			cfg, f, err := factoryAdmin(c)
			if err != nil {
				return err
			}
			w := c.App.Writer
			if err := stopCacheServer(c.Context, cfg.Factory.VMCacheEndpoint); err != nil {
				return fmt.Errorf("factory destroy: %w", err)
			}
			if err := f.DestroyTemplate(c.Context); err != nil {
				return fmt.Errorf("factory destroy: %w", err)
			}
			fmt.Fprintf(w, "template removed from %s\n", cfg.Factory.TemplatePath)
			return nil
		},
	}
}

// stopCacheServer sends SIGTERM to the cache server answering on endpoint, if any, and
// waits until its socket is gone.
func stopCacheServer(ctx context.Context, endpoint string) error {
	st, err := factory.CacheStatus(ctx, endpoint)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	pid := int(st.GetPid())
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("stop vm cache server %d: %w", pid, err)
	}
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if _, err := factory.CacheStatus(ctx, endpoint); errdefs.IsNotFound(err) {
			return nil
		}
		time.Sleep(100 * time.Millisecond) // the server has no exit event to wait on
	}
	return fmt.Errorf("vm cache server %d still answers on %s a minute after SIGTERM", pid, endpoint)
}

// factoryConfig loads the configuration the way the runtime does and inspects the host.
func factoryConfig(c *cli.Context) (*config.Config, config.Host, error) {
	cfg, _, err := config.LoadFrom(configPath(c), os.Getenv, config.SystemPath)
	if err != nil {
		return nil, config.Host{}, err
	}
	host, err := config.DetectHost()
	if err != nil {
		return nil, config.Host{}, fmt.Errorf("inspect host: %w", err)
	}
	return cfg, host, nil
}

// factoryAdmin loads the configuration and returns the factory for the admin verbs.
func factoryAdmin(c *cli.Context) (*config.Config, *factory.Factory, error) {
	cfg, host, err := factoryConfig(c)
	if err != nil {
		return nil, nil, err
	}
	return cfg, factory.Admin(cfg, host), nil
}

// factoryConfigFlag is the --config flag of the factory commands.
func factoryConfigFlag() cli.Flag {
	return &cli.StringFlag{Name: "config", Usage: "configuration file (overrides the global --config)"}
}
