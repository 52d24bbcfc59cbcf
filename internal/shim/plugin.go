package shim

import (
	"github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/containerd/v2/pkg/shutdown"
	"github.com/containerd/containerd/v2/plugins"
	"github.com/containerd/log"
	"github.com/containerd/plugin"
	"github.com/containerd/plugin/registry"
)

// Register adds the task service to the shim's plugin graph. The binary calls it once
// before shim.Run.
func Register() {
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
			var publisher shim.Publisher = discardPublisher{}
			if ic.Properties[plugins.PropertyTTRPCAddress] != "" {
				publisher = pp.(shim.Publisher)
			}
			if o, ok := ic.Context.Value(shim.OptsKey{}).(shim.Opts); ok && o.Debug && logsToFile() {
				// shim.Run sets the level only when it sets up containerd's log FIFO.
				_ = log.SetLevel("debug")
			}
			return NewTaskService(ic.Context, publisher, ss.(shutdown.Service))
		},
	})
}
