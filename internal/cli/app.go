// Package cli implements the `vessel` command: the runc-compatible OCI verbs and the admin
// verbs. Each verb lives in its own file and returns a *cli.Command.
package cli

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/containerd/log"
	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"

	"github.com/vessel-containers/vessel/internal/version"
)

// DefaultRoot is where vessel keeps runtime state.
const DefaultRoot = "/run/vessel"

// App is the vessel command line.
func App() *cli.App {
	return &cli.App{
		Name:    "vessel",
		Usage:   "run OCI containers in lightweight virtual machines",
		Version: version.Version,
		Description: `vessel is a runc-compatible OCI runtime that runs each sandbox in its own virtual
machine (QEMU; KVM when usable, software emulation otherwise). A container escape lands in
a throw-away guest kernel, not on the host.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "root", Value: DefaultRoot, Usage: "directory for runtime state"},
			&cli.StringFlag{Name: "log", Usage: "write logs to this file instead of stderr"},
			&cli.StringFlag{Name: "log-format", Value: "text", Usage: "log format: text or json"},
			&cli.BoolFlag{Name: "debug", Usage: "log debug messages"},
			&cli.StringFlag{Name: "config", Usage: "configuration file (default: $VESSEL_CONFIG, /etc/vessel/configuration.toml, built-in defaults)"},
		},
		Before: setupLogging,
		After: func(c *cli.Context) error {
			if f, ok := c.App.Metadata["logfile"].(io.Closer); ok {
				return f.Close()
			}
			return nil
		},
		Commands: commands(),
	}
}

// setupLogging points the context logger at stderr or --log, in the chosen format.
func setupLogging(c *cli.Context) error {
	logger := logrus.New()
	logger.SetOutput(os.Stderr)
	if path := c.String("log"); path != "" {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("open log file: %w", err)
		}
		logger.SetOutput(f)
		c.App.Metadata = map[string]any{"logfile": f}
	}
	switch c.String("log-format") {
	case "text":
		logger.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, TimestampFormat: log.RFC3339NanoFixed})
	case "json":
		logger.SetFormatter(&logrus.JSONFormatter{TimestampFormat: log.RFC3339NanoFixed})
	default:
		return fmt.Errorf("--log-format %q: want text or json", c.String("log-format"))
	}
	logger.SetLevel(logrus.WarnLevel)
	if c.Bool("debug") {
		logger.SetLevel(logrus.DebugLevel)
	}
	ctx := log.WithLogger(c.Context, logrus.NewEntry(logger))
	c.Context = ctx
	return nil
}

// Run runs the app with os.Args and returns the process exit code.
func Run(ctx context.Context, args []string) int {
	code := 0
	app := App()
	app.ExitErrHandler = func(c *cli.Context, err error) {
		if err == nil {
			return
		}
		code = 1
		if ec, ok := err.(cli.ExitCoder); ok { //nolint:errorlint // cli.Exit values are never wrapped
			code = ec.ExitCode()
			if err.Error() == "" {
				return
			}
		}
		fmt.Fprintf(os.Stderr, "vessel: %v\n", err)
	}
	if err := app.RunContext(ctx, args); err != nil && code == 0 {
		fmt.Fprintf(os.Stderr, "vessel: %v\n", err)
		code = 1
	}
	return code
}
