package hostcgroup

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// unifiedRoot is where the cgroup v2 hierarchy is mounted on a unified host.
const unifiedRoot = "/sys/fs/cgroup"

// CheckDelegated reports whether a process without real root can place the sandbox in the
// cgroup t names: only a cgroupfs path on a cgroup v2 host whose nearest existing cgroup
// this user may write (a subtree delegated to it, as systemd's user@.service with
// Delegate=yes gives). The error names what is missing.
func CheckDelegated(t Target) error {
	if t.Driver == DriverSystemd {
		return fmt.Errorf("rootless: the systemd cgroup driver (%s in %s) goes through the system's systemd, which needs root; the user's systemd instance is not supported: %w",
			t.Unit, t.Slice, errdefs.ErrNotImplemented)
	}
	if cgroups.Mode() != cgroups.Unified {
		return fmt.Errorf("rootless: host cgroup %s: this host runs cgroup v1 (or hybrid), whose hierarchies cannot be delegated to a user; a rootless sandbox needs cgroup v2 or no cgroupsPath: %w",
			t.Path, errdefs.ErrFailedPrecondition)
	}
	return checkWritable(unifiedRoot, t.Path)
}

// checkWritable checks that the nearest existing cgroup of path under root is one this
// user can create cgroups in and move processes into.
func checkWritable(root, path string) error {
	dir := filepath.Join(root, path)
	for {
		if _, err := os.Stat(dir); err == nil {
			break
		}
		if dir == root {
			break
		}
		dir = filepath.Dir(dir)
	}
	for _, p := range []string{dir, filepath.Join(dir, "cgroup.procs")} {
		if err := unix.Access(p, unix.W_OK); err != nil {
			return fmt.Errorf("rootless: host cgroup %s: %s is not delegated to uid %d (%w): delegate a cgroup v2 subtree to the user or run without a cgroupsPath (podman --cgroups=disabled)",
				path, p, os.Geteuid(), err)
		}
	}
	return nil
}
