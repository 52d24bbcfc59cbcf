package shim

import (
	"context"

	"github.com/vessel-containers/vessel/internal/config"
	"github.com/vessel-containers/vessel/internal/factory"
	"github.com/vessel-containers/vessel/internal/sandbox"
)

// vmSource is the VM factory the configuration's [factory] section asks for (a template,
// the VM cache server, or both), or nil: the sandbox boots cold. cfg is the configuration
// before the pod's annotations: templates and cached VMs are built from it.
func vmSource(ctx context.Context, cfg *config.Config, host config.Host) sandbox.VMSource {
	if f := factory.FromConfig(ctx, cfg, host); f != nil {
		return f
	}
	return nil
}
