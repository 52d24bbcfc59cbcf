package cli

import "github.com/urfave/cli/v2"

func commands() []*cli.Command {
	return []*cli.Command{
		// The OCI runtime verbs, as runc names them.
		createCommand(),
		startCommand(),
		runCommand(),
		stateCommand(),
		killCommand(),
		deleteCommand(),
		execCommand(),
		psCommand(),
		listCommand(),
		pauseCommand(),
		resumeCommand(),
		eventsCommand(),
		updateCommand(),
		specCommand(),
		featuresCommand(),
		monitorCommand(),
		checkpointCommand(),
		restoreCommand(),
		// Administration.
		ImageCommand(),
		EnvCommand(),
		configCommand(),
		CheckCommand(),
		FactoryCommand(),
		debugCommand(),
		sandboxCommand(),
		directVolumeCommand(),
		installCommand(),
		uninstallCommand(),
	}
}
