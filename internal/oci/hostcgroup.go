package oci

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/vessel-containers/vessel/internal/config"
	"github.com/vessel-containers/vessel/internal/hostcgroup"
)

// hostCgroupPlan decides where the sandbox's host processes go: the pod's cgroup named by
// the spec's linux.cgroupsPath (cgroupfs path, or systemd's slice:prefix:name where the
// host runs systemd: hostcgroup.Parse), with
// runtime.sandbox_cgroup_only deciding whether the shim stays there too. A spec without a
// cgroupsPath places nothing.
func hostCgroupPlan(c *config.Config, spec *specs.Spec) (hostcgroup.Config, error) {
	if spec.Linux == nil || spec.Linux.CgroupsPath == "" {
		return hostcgroup.Config{}, nil
	}
	if _, err := hostcgroup.Parse(spec.Linux.CgroupsPath, hostcgroup.SystemdRunning()); err != nil {
		return hostcgroup.Config{}, err
	}
	return hostcgroup.Config{Path: spec.Linux.CgroupsPath, SandboxOnly: c.Runtime.SandboxCgroupOnly}, nil
}
