package cli

import (
	"errors"
	"fmt"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// checkCgroupsPath validates linux.cgroupsPath against the cgroup driver chosen with
// --systemd-cgroup, as runc does: systemd wants "slice:prefix:name" and a host that runs
// systemd (systemdRunning), cgroupfs a path. The
// shim puts the sandbox's VM into that cgroup on the host (internal/hostcgroup); the guest
// agent picks the container's cgroup inside the VM itself.
func checkCgroupsPath(spec *specs.Spec, systemd, systemdRunning bool) error {
	if spec.Linux == nil || spec.Linux.CgroupsPath == "" {
		return nil
	}
	p := spec.Linux.CgroupsPath
	if systemd && !systemdRunning {
		return errors.New("systemd not running on this host, cannot use systemd cgroups manager")
	}
	if systemd {
		if parts := strings.Split(p, ":"); len(parts) != 3 || strings.Contains(p, "/") {
			return fmt.Errorf("expected cgroupsPath to be of format \"slice:prefix:name\" for systemd cgroups, got %q instead", p)
		}
		return nil
	}
	if strings.Count(p, ":") == 2 && !strings.Contains(p, "/") {
		return fmt.Errorf("cgroupsPath %q looks like a systemd path (slice:prefix:name): pass --systemd-cgroup", p)
	}
	return nil
}
