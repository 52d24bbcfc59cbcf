package cli

import "github.com/urfave/cli/v2"

func commands() []*cli.Command {
	return []*cli.Command{
		runCommand(),
		ImageCommand(),
		EnvCommand(),
		CheckCommand(),
	}
}
