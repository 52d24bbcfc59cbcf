package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/vessel-containers/vessel/internal/nodeinstall"
)

// installCommand is `vessel install`: the CRI runtime handler in containerd's
// configuration (package nodeinstall).
func installCommand() *cli.Command {
	return &cli.Command{
		Name:  "install",
		Usage: "install Vessel on a node: binaries and guest image (--from), the CRI runtime handler \"vessel\" in containerd's configuration, the node label (--node-name)",
		Description: `With --from DIR, copies vessel, containerd-shim-vessel-v2 and vessel-monitor from DIR
into PREFIX/bin (--prefix, default /usr/local), the guest image (vmlinux, initramfs.img,
and manifest.json when DIR has it) into --guest-dir (default /var/lib/vessel/guest), and
writes the built-in Vessel configuration to --vessel-config when there is none (its
kernel and initrd in --guest-dir). Each file is written atomically with the source's mode;
a file that holds the same bytes and mode already is left alone, and a file that differs
is replaced, its previous bytes kept in CONFIG.vessel-install.d. Without --from nothing is
copied.

Adds the runtime handler (runtime_type io.containerd.vessel.v2, pod_annotations for
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

What was there before, and every file written, is recorded in CONFIG.vessel-install.json;
"vessel uninstall" removes what the install added and puts back what it replaced, byte
for byte. Running install again when the install is in place (the same files) does
nothing; with other files (a new release in --from) it replaces the files it wrote and
leaves containerd's configuration as it is, and the record keeps what was there before
the first install. It refuses when a file it wrote changed since; and it refuses a
configuration it cannot parse, one that is config version 1, and one that configures a
handler of that name already. containerd reads its configuration at start: --restart restarts it through
systemd, otherwise restart it yourself.

With --node-name NAME it then runs "kubectl label node NAME vessel.io/runtime=true
--overwrite" (--kubectl names the binary), the label the RuntimeClass "vessel" selects
nodes by. --root DIR reads and writes every host path (--config, --prefix, --guest-dir,
--vessel-config, containerd's imports) beneath DIR, for a DaemonSet that mounts the
host's / there (deploy/kubernetes/vessel-deploy.yaml), resolving symbolic links beneath
DIR as the host would. The record keeps the root, so uninstall may run with another
(on the node itself, without --root).`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Value: nodeinstall.DefaultConfig, Usage: "containerd configuration file (it may be missing)"},
			&cli.Int64Flag{Name: "config-version", Usage: "config version to write when the file has none: 2 (containerd 1.6) or 3 (containerd 2.x) (default: from containerd --version)"},
			&cli.StringFlag{Name: "containerd", Value: "containerd", Usage: "containerd binary asked for its version when the config version is needed"},
			&cli.StringFlag{Name: "handler", Value: nodeinstall.DefaultHandler, Usage: "runtime handler name (a RuntimeClass's handler)"},
			&cli.StringFlag{Name: "vessel-config", Value: nodeinstall.DefaultVesselConfig, Usage: "Vessel configuration the handler's shim reads (options.ConfigPath); with --from, the built-in one is written there when it is missing"},
			&cli.BoolFlag{Name: "restrict-oom-score-adj", Usage: "set the CRI plugin's restrict_oom_score_adj, which a containerd without CAP_SYS_RESOURCE needs"},
			&cli.StringFlag{Name: "from", Usage: "directory holding the binaries and the guest image to install (default: none copied)"},
			&cli.StringFlag{Name: "prefix", Value: nodeinstall.DefaultPrefix, Usage: "with --from: the binaries go into PREFIX/bin"},
			&cli.StringFlag{Name: "guest-dir", Value: nodeinstall.DefaultGuestDir, Usage: "with --from: where the guest image goes"},
			rootFlag(),
			&cli.StringFlag{Name: "node-name", Usage: "label this Kubernetes node " + nodeinstall.NodeLabelKey + "=" + nodeinstall.NodeLabelValue + " with kubectl"},
			kubectlFlag(),
			&cli.BoolFlag{Name: "dry-run", Usage: "print what would be written and change nothing"},
			&cli.BoolFlag{Name: "restart", Usage: "restart containerd (systemctl restart containerd) after the change"},
		},
		Action: func(c *cli.Context) error {
			opts := nodeinstall.Options{
				From:                c.String("from"),
				Prefix:              c.String("prefix"),
				GuestDir:            c.String("guest-dir"),
				Root:                c.String("root"),
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
			dry := c.Bool("dry-run")
			if plan.Installed {
				fmt.Fprintf(w, "vessel install: already installed (recorded in %s): nothing to do\n", plan.StateFile())
				return label(c, w, nodeinstall.LabelArgs, dry)
			}
			fmt.Fprintf(w, "# containerd config version %d (%s), plugin %s, handler %q\n", plan.Layout.Version, plan.Layout.Containerd, plan.Layout.Plugin, opts.Handler)
			for _, n := range plan.Notes {
				fmt.Fprintf(w, "# %s\n", n)
			}
			printChanges(w, plan.Changes, dry)
			if dry {
				fmt.Fprintf(w, "# would record the original in %s\n", plan.StateFile())
				return label(c, w, nodeinstall.LabelArgs, dry)
			}
			if err := plan.Apply(); err != nil {
				return err
			}
			fmt.Fprintf(w, "# recorded the original in %s (vessel uninstall puts it back)\n", plan.StateFile())
			if err := restart(c.Context, w, c.Bool("restart")); err != nil {
				return err
			}
			return label(c, w, nodeinstall.LabelArgs, dry)
		},
	}
}

// uninstallCommand is `vessel uninstall`: it puts back what `vessel install` changed.
func uninstallCommand() *cli.Command {
	return &cli.Command{
		Name:  "uninstall",
		Usage: "undo \"vessel install\": files, containerd's configuration and the node label as they were",
		Description: `With --node-name NAME, first takes the label off the node ("kubectl label node NAME
vessel.io/runtime-"), so that no more Vessel pods are scheduled there; it does so too
when no install is recorded, and then fails saying so. Then removes the
binaries, guest image files, Vessel configuration and directories "vessel install" wrote
and created, puts back byte for byte (with their modes) the files it replaced, restores
the containerd configuration (or removes it when there was none), removes the drop-in it
wrote and the record. It refuses when the files changed since the install wrote them;
--force puts the originals back anyway, undoing those changes too. --root need not be the
one the install ran with: the record's paths are read beneath this one.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Value: nodeinstall.DefaultConfig, Usage: "containerd configuration file"},
			rootFlag(),
			&cli.StringFlag{Name: "node-name", Usage: "take the label " + nodeinstall.NodeLabelKey + " off this Kubernetes node with kubectl"},
			kubectlFlag(),
			&cli.BoolFlag{Name: "force", Usage: "put the original back even when the files changed since the install"},
			&cli.BoolFlag{Name: "dry-run", Usage: "print what would be done and change nothing"},
			&cli.BoolFlag{Name: "restart", Usage: "restart containerd (systemctl restart containerd) after the change"},
		},
		Action: func(c *cli.Context) error {
			w := c.App.Writer
			dry := c.Bool("dry-run")
			plan, err := nodeinstall.PlanUninstall(c.String("config"), c.String("root"), c.Bool("force"))
			if errors.Is(err, fs.ErrNotExist) {
				// Nothing to undo on this node, but it may still carry the label.
				if lerr := label(c, w, nodeinstall.UnlabelArgs, dry); lerr != nil {
					return fmt.Errorf("%w; %w", err, lerr)
				}
			}
			if err != nil {
				return err
			}
			if err := label(c, w, nodeinstall.UnlabelArgs, dry); err != nil {
				return err
			}
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

func rootFlag() cli.Flag {
	return &cli.StringFlag{Name: "root", Value: "/", Usage: "the host's / as this process sees it (e.g. /host in a DaemonSet): every host path is read and written beneath it"}
}

func kubectlFlag() cli.Flag {
	return &cli.StringFlag{Name: "kubectl", Value: "kubectl", Usage: "kubectl binary that labels the node (--node-name)"}
}

// label runs kubectl with args(--node-name) when --node-name is given; dry prints the
// command instead.
func label(c *cli.Context, w io.Writer, args func(node string) []string, dry bool) error {
	node := c.String("node-name")
	if node == "" {
		return nil
	}
	a := args(node)
	cmd := c.String("kubectl") + " " + strings.Join(a, " ")
	if dry {
		fmt.Fprintf(w, "# would run: %s\n", cmd)
		return nil
	}
	if err := nodeinstall.Kubectl(c.Context, c.String("kubectl"), a); err != nil {
		return err
	}
	fmt.Fprintf(w, "# ran: %s\n", cmd)
	return nil
}

// printChanges prints each change; the data written to containerd's configuration follows
// its line.
func printChanges(w io.Writer, changes []nodeinstall.Change, dry bool) {
	for _, ch := range changes {
		verb := map[string]string{
			"create": "wrote", "append": "appended to", "restore": "restored", "remove": "removed",
			"install": "wrote", "replace": "replaced", "mkdir": "created directory", "rmdir": "removed directory (when empty)",
		}[ch.Action]
		if dry {
			verb = "would " + map[string]string{
				"create": "write", "append": "append to", "restore": "restore", "remove": "remove",
				"install": "write", "replace": "replace", "mkdir": "create directory", "rmdir": "remove directory (when empty)",
			}[ch.Action]
		}
		switch ch.Action {
		case "install", "replace":
			fmt.Fprintf(w, "# %s %s (mode %04o, %d bytes, from %s)\n", verb, ch.Path, ch.Perm, len(ch.Data), ch.From)
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
