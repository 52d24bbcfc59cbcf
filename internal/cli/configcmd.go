package cli

import (
	"bytes"
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/vessel-containers/vessel/internal/atomicfile"
	"github.com/vessel-containers/vessel/internal/config"
)

// configCommand is `vessel config`: configuration tools other than `vessel env`.
func configCommand() *cli.Command {
	return &cli.Command{
		Name:        "config",
		Usage:       "configuration tools (vessel env prints the effective configuration)",
		Subcommands: []*cli.Command{configImportKataCommand()},
	}
}

func configImportKataCommand() *cli.Command {
	return &cli.Command{
		Name:      "import-kata",
		Usage:     "convert a Kata Containers QEMU configuration.toml into a Vessel configuration",
		ArgsUsage: "KATA-CONFIGURATION.toml",
		Description: `Reads Kata Containers' configuration for QEMU ([hypervisor.qemu], [agent.kata], [runtime],
[factory]) and writes a Vessel configuration with every key Vessel has an equivalent for
(docs/configuration.md, "Importing a Kata configuration"): to stdout, or to --output. Every
Kata key it does not carry over is named, with the reason, on stderr and in a comment at
the top of the result: keys Vessel has no equivalent for, Kata's guest image and virtiofsd
(Vessel boots its own guest and drives QEMU's virtiofsd), and values Vessel refuses.
Configurations of Kata's other hypervisors are refused. The result is validated; check it
with "vessel env --config FILE".`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the Vessel configuration to this file instead of stdout"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return fmt.Errorf("config import-kata: want one argument, the Kata configuration file, got %d", c.NArg())
			}
			src := c.Args().First()
			data, err := os.ReadFile(src)
			if err != nil {
				return fmt.Errorf("kata configuration: %w", err)
			}
			imp, err := config.ImportKata(data, src)
			if err != nil {
				return err
			}
			var out bytes.Buffer
			if err := imp.Encode(&out, src); err != nil {
				return err
			}
			ew := c.App.ErrWriter
			fmt.Fprintf(ew, "vessel config import-kata: %d keys carried over, %d not:\n", len(imp.Carried), len(imp.Dropped))
			for _, d := range imp.Dropped {
				fmt.Fprintf(ew, "  dropped %s = %s: %s\n", d.Kata, d.Value, d.Reason)
			}
			if path := c.String("output"); path != "" {
				return atomicfile.WriteFile(path, out.Bytes(), 0o644)
			}
			_, err = c.App.Writer.Write(out.Bytes())
			return err
		},
	}
}
