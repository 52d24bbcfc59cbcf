package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/vessel-containers/vessel/internal/hostcgroup"
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

// warnCgroupNotEmpty warns, as runc 1.1 does, when a cgroupfs linux.cgroupsPath names a
// cgroup that already holds processes (another container's VM, when two containers name
// the same path): the new sandbox's VM joins them there, and a limit on that cgroup then
// bounds both. root is the cgroup mount point (cgroupRoot).
func warnCgroupNotEmpty(ctx context.Context, spec *specs.Spec, systemd bool, root string) {
	if systemd || spec.Linux == nil || spec.Linux.CgroupsPath == "" {
		return
	}
	n, err := hostcgroup.Procs(root, path.Clean("/"+spec.Linux.CgroupsPath))
	switch {
	case err != nil:
		log.G(ctx).WithError(err).Warn("cannot tell whether the container's cgroup is empty")
	case n > 0:
		log.G(ctx).Warnf("container's cgroup is not empty: %d process(es) found", n)
	}
}

// cgroupRoot is where the host's cgroup file systems are mounted.
const cgroupRoot = "/sys/fs/cgroup"

// checkCgroupNotFrozen refuses a cgroupfs linux.cgroupsPath whose cgroup exists and is
// frozen (v1: the freezer hierarchy's freezer.state is not THAWED; v2: cgroup.events says
// "frozen 1"), as runc does: the shim joins that cgroup before the VM starts, and would
// stop there with nothing to say why. root is the cgroup mount point (cgroupRoot).
func checkCgroupNotFrozen(spec *specs.Spec, systemd bool, root string) error {
	if systemd || spec.Linux == nil || spec.Linux.CgroupsPath == "" {
		return nil
	}
	p := path.Clean("/" + spec.Linux.CgroupsPath)
	if b, err := os.ReadFile(filepath.Join(root, "freezer", p, "freezer.state")); err == nil {
		if st := strings.TrimSpace(string(b)); st != "THAWED" {
			return fmt.Errorf("container's cgroup unexpectedly frozen: %s is %s", filepath.Join(root, "freezer", p), st)
		}
		return nil
	}
	if b, err := os.ReadFile(filepath.Join(root, p, "cgroup.events")); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.TrimSpace(line) == "frozen 1" {
				return fmt.Errorf("container's cgroup unexpectedly frozen: %s", filepath.Join(root, p))
			}
		}
	}
	return nil
}
