package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"

	"github.com/urfave/cli/v2"

	"github.com/vessel-containers/vessel/internal/nodeinstall"
)

// installCommand is `vessel install`: the CRI runtime handler in containerd's
// configuration (package nodeinstall).
func installCommand() *cli.Command {
	return &cli.Command{
		Name:  "install",
		Usage: "add the CRI runtime handler \"vessel\" to containerd's configuration",
		Description: `Adds the runtime handler (runtime_type io.containerd.vessel.v2, pod_annotations for
io.vessel.config.* and io.katacontainers.config.*, privileged_without_host_devices, and
options.ConfigPath naming the Vessel configuration) to a containerd configuration:
config version 2 (containerd 1.6, plugin io.containerd.grpc.v1.cri) or 3 (containerd 2.x,
plugin io.containerd.cri.v1.runtime), taken from the file's version, else from
--config-version, else from "containerd --version".

The handler goes into conf.d/vessel.toml next to the configuration when the configuration
imports that path (containerd 2.x imports /etc/containerd/conf.d/*.toml by itself) and, for
containerd 1.6, has no CRI section the drop-in would replace. Otherwise it is appended to
the configuration, or a new configuration is written when there is none. For containerd
1.6 the runc handler is written too when the configuration does not have it: 1.6 drops its
built-in one once any handler is configured.

What was there before is kept in CONFIG.vessel-install.json; "vessel uninstall" puts it
back byte for byte. Running install again when the install is in place does nothing. It
refuses a configuration it cannot parse, one that is config version 1, and one that
configures a handler of that name already. containerd reads its configuration at start:
--restart restarts it through systemd, otherwise restart it yourself.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Value: nodeinstall.DefaultConfig, Usage: "containerd configuration file (it may be missing)"},
			&cli.Int64Flag{Name: "config-version", Usage: "config version to write when the file has none: 2 (containerd 1.6) or 3 (containerd 2.x) (default: from containerd --version)"},
			&cli.StringFlag{Name: "containerd", Value: "containerd", Usage: "containerd binary asked for its version when the config version is needed"},
			&cli.StringFlag{Name: "handler", Value: nodeinstall.DefaultHandler, Usage: "runtime handler name (a RuntimeClass's handler)"},
			&cli.StringFlag{Name: "vessel-config", Value: nodeinstall.DefaultVesselConfig, Usage: "Vessel configuration the handler's shim reads (options.ConfigPath)"},
			&cli.BoolFlag{Name: "restrict-oom-score-adj", Usage: "set the CRI plugin's restrict_oom_score_adj, which a containerd without CAP_SYS_RESOURCE needs"},
			&cli.BoolFlag{Name: "dry-run", Usage: "print what would be written and change nothing"},
			&cli.BoolFlag{Name: "restart", Usage: "restart containerd (systemctl restart containerd) after the change"},
		},
		Action: func(c *cli.Context) error {
			opts := nodeinstall.Options{
				Config:              c.String("config"),
				Version:             c.Int64("config-version"),
				Handler:             c.String("handler"),
				VesselConfig:        c.String("vessel-config"),
				RestrictOOMScoreAdj: c.Bool("restrict-oom-score-adj"),
			}
			detect := func() (int64, error) { return nodeinstall.DetectVersion(c.Context, c.String("containerd")) }
			plan, err := nodeinstall.PlanInstall(opts, detect)
			if err != nil {
				return err
			}
			w := c.App.Writer
			if plan.Installed {
				fmt.Fprintf(w, "vessel install: already installed (recorded in %s): nothing to do\n", plan.StateFile())
				return nil
			}
			dry := c.Bool("dry-run")
			fmt.Fprintf(w, "# containerd config version %d (%s), plugin %s, handler %q\n", plan.Layout.Version, plan.Layout.Containerd, plan.Layout.Plugin, opts.Handler)
			for _, n := range plan.Notes {
				fmt.Fprintf(w, "# %s\n", n)
			}
			printChanges(w, plan.Changes, dry)
			if dry {
				fmt.Fprintf(w, "# would record the original in %s\n", plan.StateFile())
				return nil
			}
			if err := plan.Apply(); err != nil {
				return err
			}
			fmt.Fprintf(w, "# recorded the original in %s (vessel uninstall puts it back)\n", plan.StateFile())
			return restart(c.Context, w, c.Bool("restart"))
		},
	}
}

// uninstallCommand is `vessel uninstall`: it puts back what `vessel install` changed.
func uninstallCommand() *cli.Command {
	return &cli.Command{
		Name:  "uninstall",
		Usage: "put back containerd's configuration as it was before \"vessel install\"",
		Description: `Restores the containerd configuration that "vessel install" recorded, byte for byte (or
removes it when there was none), removes the drop-in it wrote and the record. It refuses
when the files changed since the install wrote them; --force puts the original back
anyway, undoing those changes too.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Value: nodeinstall.DefaultConfig, Usage: "containerd configuration file"},
			&cli.BoolFlag{Name: "force", Usage: "put the original back even when the files changed since the install"},
			&cli.BoolFlag{Name: "dry-run", Usage: "print what would be done and change nothing"},
			&cli.BoolFlag{Name: "restart", Usage: "restart containerd (systemctl restart containerd) after the change"},
		},
		Action: func(c *cli.Context) error {
			plan, err := nodeinstall.PlanUninstall(c.String("config"), c.Bool("force"))
			if err != nil {
				return err
			}
			w := c.App.Writer
			dry := c.Bool("dry-run")
			printChanges(w, plan.Changes, dry)
			if dry {
				return nil
			}
			if err := plan.Apply(); err != nil {
				return err
			}
			return restart(c.Context, w, c.Bool("restart"))
		},
	}
}

// printChanges prints each change; the data written follows its line.
func printChanges(w io.Writer, changes []nodeinstall.Change, dry bool) {
	for _, ch := range changes {
		verb := map[string]string{"create": "wrote", "append": "appended to", "restore": "restored", "remove": "removed"}[ch.Action]
		if dry {
			verb = map[string]string{"create": "would write", "append": "would append to", "restore": "would restore", "remove": "would remove"}[ch.Action]
		}
		switch ch.Action {
		case "create", "append":
			fmt.Fprintf(w, "# %s %s:\n%s", verb, ch.Path, ch.Data)
		case "restore":
			fmt.Fprintf(w, "# %s %s (%d bytes, as before the install)\n", verb, ch.Path, len(ch.Data))
		default:
			fmt.Fprintf(w, "# %s %s\n", verb, ch.Path)
		}
	}
}

// restart restarts containerd through systemd when asked and systemd runs; otherwise it
// says what to do.
func restart(ctx context.Context, w io.Writer, do bool) error {
	_, err := os.Stat("/run/systemd/system")
	systemd := err == nil
	switch {
	case !do && systemd:
		fmt.Fprintln(w, "# containerd reads its configuration at start: systemctl restart containerd (or pass --restart)")
	case !do:
		fmt.Fprintln(w, "# containerd reads its configuration at start: restart it")
	case !systemd:
		return errors.New("the configuration is written, but --restart needs systemd, which does not run here (no /run/systemd/system): restart containerd yourself")
	default:
		cmd := exec.CommandContext(ctx, "systemctl", "restart", "containerd")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("systemctl restart containerd: %w: %s", err, out)
		}
		fmt.Fprintln(w, "# restarted containerd")
	}
	return nil
}
