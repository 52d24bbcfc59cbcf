package cli

import (
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli/v2"

	"github.com/vessel-containers/vessel/internal/config"
	"github.com/vessel-containers/vessel/internal/oci"
)

// planSandbox loads the configuration (--config, $VESSEL_CONFIG,
// /etc/vessel/configuration.toml, built-in defaults) and turns it, the spec and its
// annotations into the sandbox plan.
func planSandbox(c *cli.Context, id, bundleDir string, spec *specs.Spec) (*oci.Sandbox, error) {
	cfg, err := config.Load(c.String("config"))
	if err != nil {
		return nil, err
	}
	host, err := config.DetectHost()
	if err != nil {
		return nil, fmt.Errorf("inspect host: %w", err)
	}
	plan, err := oci.SandboxConfig(c.Context, id, bundleDir, spec, cfg, oci.Options{Host: host})
	if err != nil {
		return nil, err
	}
	return plan, nil
}
