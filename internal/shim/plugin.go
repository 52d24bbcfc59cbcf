package shim

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/containerd/v2/pkg/shutdown"
	"github.com/containerd/containerd/v2/plugins"
	"github.com/containerd/fifo"
	"github.com/containerd/log"
	"github.com/containerd/plugin"
	"github.com/containerd/plugin/registry"
	"golang.org/x/sys/unix"

	"github.com/vessel-containers/vessel/internal/shimproto"
)

// Register defines the shim's own flags on the standard flag set, which shim.Run parses,
// and adds the task service to the shim's plugin graph. The binary calls it once before
// shim.Run.
func Register() {
	shimproto.Register(flag.CommandLine)
	registry.Register(&plugin.Registration{
		Type:     plugins.TTRPCPlugin,
		ID:       "task",
		Requires: []plugin.Type{plugins.EventPlugin, plugins.InternalPlugin},
		InitFn: func(ic *plugin.InitContext) (interface{}, error) {
			pp, err := ic.GetByID(plugins.EventPlugin, "publisher")
			if err != nil {
				return nil, err
			}
			ss, err := ic.GetByID(plugins.InternalPlugin, "shutdown")
			if err != nil {
				return nil, err
			}
			o, _ := ic.Context.Value(shim.OptsKey{}).(shim.Opts)
			if err := setupLog(ic.Context, shimproto.Lookup(flag.CommandLine), o.Debug); err != nil {
				return nil, err
			}
			var publisher shim.Publisher = discardPublisher{}
			if ic.Properties[plugins.PropertyTTRPCAddress] != "" {
				publisher = pp.(shim.Publisher)
			}
			return NewTaskService(ic.Context, publisher, ss.(shutdown.Service))
		},
	})
}

// setupLog points the shim process's log where whoever started it reads it: the file
// -log-file names (Manager.Start made it the process's stderr, which the log writes to by
// default), else containerd's log FIFO "log" in the working directory, the bundle.
func setupLog(ctx context.Context, o shimproto.Options, debug bool) error {
	_ = log.SetFormat(log.TextFormat)
	if debug {
		_ = log.SetLevel("debug")
	}
	if o.LogFile != "" {
		return nil
	}
	f, err := fifo.OpenFifoDup2(ctx, "log", unix.O_WRONLY, 0o700, int(os.Stderr.Fd()))
	if err != nil {
		return fmt.Errorf("open containerd's shim log FIFO: %w", err)
	}
	log.G(ctx).Logger.SetOutput(f)
	return nil
}
