// Binary containerd-shim-vessel-v2 is Vessel's containerd shim v2 (runtime type
// io.containerd.vessel.v2): one process per sandbox, owning the sandbox's VM. The vessel
// CLI runs the same binary, with the flags internal/shimproto describes, for the
// containers it runs.
package main

import (
	"context"

	"github.com/containerd/containerd/v2/pkg/shim"

	"github.com/vessel-containers/vessel/internal/jail"
	vshim "github.com/vessel-containers/vessel/internal/shim"
)

func main() {
	jail.Main() // the VMM's confinement: returns unless started as the jail entry
	vshim.Register()
	shim.Run(context.Background(), vshim.NewManager(), vshim.Options)
}
