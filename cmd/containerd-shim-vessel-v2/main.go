// Binary containerd-shim-vessel-v2 is Vessel's containerd shim v2 (runtime type
// io.containerd.vessel.v2): one process per sandbox, owning the sandbox's VM.
package main

import (
	"context"

	"github.com/containerd/containerd/v2/pkg/shim"

	vshim "github.com/vessel-containers/vessel/internal/shim"
)

func main() {
	vshim.Register()
	// No reaper: the shim waits for its own children (QEMU) with exec.Cmd, and a
	// catch-all reaper would steal their exit statuses.
	shim.Run(context.Background(), vshim.NewManager(), func(c *shim.Config) {
		c.NoReaper = true
		c.NoSubreaper = true
	})
}
