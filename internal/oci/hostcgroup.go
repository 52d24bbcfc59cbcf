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
// cgroupsPath gets a cgroup named after the sandbox, as runc names one after the container:
// the scope vessel-ID.scope in system.slice where the host runs systemd, /ID otherwise;
// rootless (hypervisor.rootless), where only a delegated cgroup the spec names can be
// used, it places nothing.
func hostCgroupPlan(c *config.Config, spec *specs.Spec, sandboxID string, systemd bool) (hostcgroup.Config, error) {
	p := ""
	if spec.Linux != nil {
		p = spec.Linux.CgroupsPath
	}
	if p == "" && c.Hypervisor.Rootless {
		return hostcgroup.Config{}, nil
	}
	if p == "" {
		p = "/" + sandboxID
		if systemd {
			p = "system.slice:vessel:" + sandboxID
		}
	}
	if _, err := hostcgroup.Parse(p, systemd); err != nil {
		return hostcgroup.Config{}, err
	}
	return hostcgroup.Config{Path: p, SandboxOnly: c.Runtime.SandboxCgroupOnly}, nil
}
