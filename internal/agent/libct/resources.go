//go:build linux

package libct

import (
	"fmt"
	"reflect"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/opencontainers/runc/libcontainer/specconv"
)

// Update applies new resource limits to a running container. Like `runc update`, only the
// fields the update sets change; device rules are kept as they are.
func (c *Container) Update(r *specs.LinuxResources) error {
	if r == nil {
		return fmt.Errorf("%w: resources are missing", errdefs.ErrInvalidArgument)
	}
	cg, err := specconv.CreateCgroupConfig(&specconv.CreateOpts{
		Spec: &specs.Spec{Linux: &specs.Linux{Resources: r}},
	}, nil)
	if err != nil {
		return fmt.Errorf("%w: convert resources: %w", errdefs.ErrInvalidArgument, err)
	}
	cfg := c.c.Config()
	if cfg.Cgroups == nil || cfg.Cgroups.Resources == nil {
		return fmt.Errorf("container %q has no cgroup configuration", c.c.ID())
	}
	merged := *cfg.Cgroups.Resources
	mergeResources(&merged, cg.Resources)
	cgCopy := *cfg.Cgroups
	cgCopy.Resources = &merged
	cfg.Cgroups = &cgCopy
	if err := c.c.Set(cfg); err != nil {
		return fmt.Errorf("update resources of %q: %w", c.c.ID(), err)
	}
	return nil
}

// mergeResources copies every field that is set (non-zero) in upd into dst, except device
// rules.
func mergeResources(dst, upd *cgroups.Resources) {
	dv := reflect.ValueOf(dst).Elem()
	uv := reflect.ValueOf(upd).Elem()
	for i := range dv.NumField() {
		if dv.Type().Field(i).Name == "Devices" {
			continue
		}
		if f := uv.Field(i); !f.IsZero() {
			dv.Field(i).Set(f)
		}
	}
}
