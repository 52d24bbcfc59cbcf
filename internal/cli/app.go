// Package cli implements the `vessel` command: the runc-compatible OCI verbs and the admin
// verbs. Each verb lives in its own file and returns a *cli.Command. The OCI verbs are a
// client of the shim (containerd-shim-vessel-v2): they start it, or find it, and drive it
// through the same task API containerd uses, so both front doors share one engine.
package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"

	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"

	"github.com/vessel-containers/vessel/internal/version"
)

// DefaultRoot is where vessel keeps runtime state.
const DefaultRoot = "/run/vessel"

// App is the vessel command line.
func App() *cli.App {
	return &cli.App{
		Name:  "vessel",
		Usage: "run OCI containers in lightweight virtual machines",
		// The default version printer prints "vessel version <Version>": these lines follow
		// it, as runc prints its spec and Go versions.
		Version: fmt.Sprintf("%s\nspec: %s\ngo: %s", version.Version, specs.Version, runtime.Version()),
		Description: `vessel is a runc-compatible OCI runtime that runs each sandbox in its own virtual
machine (QEMU; KVM when usable, software emulation otherwise). A container escape lands in
a throw-away guest kernel, not on the host.

The OCI verbs (create, start, run, state, kill, delete, exec, ps, list, pause, resume,
events, update, spec, features) take runc's flags and keep runc's semantics and exit
codes; podman, conmon and other runc users can use vessel as their runtime. Each
container's VM is served by a containerd-shim-vessel-v2 process (found next to vessel, or
on PATH) that vessel starts; state lives under --root.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "root", DefaultText: DefaultRoot + ", rootless: $XDG_RUNTIME_DIR/vessel", Usage: "root directory for storage of container state (this should be located in tmpfs)"},
			&cli.StringFlag{Name: "log", Usage: "set the log file to write vessel logs to (default is stderr)"},
			&cli.StringFlag{Name: "log-format", Value: "text", Usage: "set the log format ('text' or 'json')"},
			&cli.BoolFlag{Name: "debug", Usage: "enable debug logging; create, run and exec also show what the guest's libcontainer logged while it set the process up (lines marked source=guest)"},
			&cli.BoolFlag{Name: "systemd-cgroup", Usage: "cgroupsPath is in systemd's form (slice:prefix:name): the sandbox's VM goes into that scope on the host, and the guest places the container's cgroup itself"},
			&cli.StringFlag{Name: "rootless", Value: "auto", Usage: "rootless mode ('true', 'false' or 'auto': on when vessel runs as a user other than root or in a user namespace); it chooses the default --root, and the sandbox's shim applies rootless mode itself (docs/rootless.md)"},
			&cli.StringFlag{Name: "config", Usage: "configuration file (default: $VESSEL_CONFIG, /etc/vessel/configuration.toml, built-in defaults)"},
		},
		// runc's repeatable flags (exec --env A=1,2) take values with commas.
		DisableSliceFlagSeparator: true,
		Before:                    setupLogging,
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

// Run runs the app with os.Args and returns the process exit code: the status of a
// foreground container or exec, 1 for any error (after printing it to stderr and, when
// --log names a file, logging it there, as runc does).
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
		if _, ok := c.App.Metadata["logfile"]; ok {
			log.G(c.Context).Error(err)
		}
		fmt.Fprintf(os.Stderr, "vessel: %v\n", err)
	}
	if err := app.RunContext(ctx, args); err != nil && code == 0 {
		fmt.Fprintf(os.Stderr, "vessel: %v\n", err)
		code = 1
	}
	return code
}
