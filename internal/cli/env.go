package cli

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/vessel-containers/vessel/internal/config"
)

// EnvCommand is `vessel env`: it prints the effective configuration as TOML, preceded by
// comments naming its source and the VM size bounds on this host. A comment above each key
// that is not supported (or has values that are not) says why.
func EnvCommand() *cli.Command {
	return &cli.Command{
		Name:  "env",
		Usage: "print the effective configuration (TOML)",
		Description: `Loads the configuration the way the runtime does (--config, $VESSEL_CONFIG,
/etc/vessel/configuration.toml, built-in defaults), validates it and prints every key.
Keys Vessel does not apply yet are marked with a comment giving the reason; they accept
only their default value.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Usage: "configuration file (overrides the global --config)"},
		},
		Action: func(c *cli.Context) error {
			cfg, src, err := config.LoadFrom(configPath(c), os.Getenv, config.SystemPath)
			if err != nil {
				return err
			}
			if src == "" {
				src = "built-in defaults"
			}
			w := c.App.Writer
			fmt.Fprintf(w, "# Effective Vessel configuration, from %s.\n", src)
			if host, err := config.DetectHost(); err == nil {
				l := cfg.Limits(host)
				fmt.Fprintf(w, "# On this host (%d CPUs, %d MiB): VMs boot with %d vCPUs and %d MiB, and may grow to %d vCPUs and %d MiB.\n",
					host.CPUs, host.MemoryMiB, l.DefaultVCPUs, l.DefaultMemoryMiB, l.MaxVCPUs, l.MaxMemoryMiB)
			}
			fmt.Fprintln(w, "# Keys marked \"Not supported\" are not applied and accept only their default value.")
			fmt.Fprintln(w)
			return cfg.Encode(w)
		},
	}
}

// configPath is the nearest --config given: the command's own, else a parent's.
func configPath(c *cli.Context) string {
	for _, ctx := range c.Lineage() {
		if v := ctx.String("config"); v != "" {
			return v
		}
	}
	return ""
}
