//go:build linux

package agent

import (
	"fmt"
	"path/filepath"
	"slices"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/vessel-containers/vessel/internal/agent/storage"
)

// checkGuestSpec refuses what the host strips from every spec before it sends it
// (oci.GuestSpec): hooks but startContainer, which would run commands in the agent's
// context as guest root (startContainer hooks run in the container, from its init once it
// has the container's user, capabilities and seccomp filter: no more than the container's
// own process may do), and namespace paths, which name host namespaces (a pod's pause process, a CNI
// netns) and in the guest would join whatever process holds that path. A spec that still has
// them is hostile or a bug. Joining the sandbox's ipc, uts or pid namespace is asked with
// CreateContainerRequest.sandbox_namespaces instead.
func checkGuestSpec(spec *specs.Spec) error {
	if h := spec.Hooks; h != nil {
		//nolint:staticcheck // Prestart: deprecated by the spec, refused like the others
		if len(h.Prestart) > 0 || len(h.CreateRuntime) > 0 || len(h.CreateContainer) > 0 || len(h.Poststart) > 0 || len(h.Poststop) > 0 {
			return fmt.Errorf("%w: oci_spec.hooks has hooks other than startContainer: the agent runs no other hooks from the host (the host runs them; the guest's own come from guest_hook_path)", errdefs.ErrInvalidArgument)
		}
	}
	if spec.Linux == nil {
		return nil
	}
	for i, ns := range spec.Linux.Namespaces {
		if ns.Path != "" {
			return fmt.Errorf("%w: oci_spec.linux.namespaces[%d] (%s) has path %q: the agent joins no namespace by path (sandbox_namespaces joins the sandbox's)", errdefs.ErrInvalidArgument, i, ns.Type, ns.Path)
		}
	}
	return nil
}

// checkSpecPaths refuses a container root or bind-mount source under runDir (the shared
// directory and the agent's storages) that goes through a symlink: something in the guest
// that can write the shared tree (a privileged container reaching it through /proc/1/root)
// could have planted one at the next container's paths to give it another directory of
// the guest. The paths are checked here and then handed to libcontainer by name, so a swap
// between the two is not excluded; what is excluded is a link planted in advance. Paths
// outside runDir are the guest's own (/dev, /proc) and are not checked.
func checkSpecPaths(runDir string, spec *specs.Spec) error {
	if spec.Root != nil && filepath.IsAbs(spec.Root.Path) {
		if err := noSymlinkBeneath(runDir, spec.Root.Path); err != nil {
			return fmt.Errorf("oci_spec.root.path: %w", err)
		}
	}
	for i, m := range spec.Mounts {
		if m.Type != "bind" && !slices.Contains(m.Options, "bind") && !slices.Contains(m.Options, "rbind") {
			continue
		}
		if !filepath.IsAbs(m.Source) {
			continue
		}
		if err := noSymlinkBeneath(runDir, m.Source); err != nil {
			return fmt.Errorf("oci_spec.mounts[%d].source: %w", i, err)
		}
	}
	return nil
}

// noSymlinkBeneath checks that no component of p below root is a symlink. A path not under
// root passes.
func noSymlinkBeneath(root, p string) error {
	rel, err := storage.Rel(root, p)
	if err != nil {
		return nil //nolint:nilerr // not under root: not the agent's to check
	}
	parent, err := storage.OpenDir(root, filepath.Dir(rel), 0, false)
	if err != nil {
		return err
	}
	defer parent.Close()
	var st unix.Stat_t
	if err := unix.Fstatat(int(parent.Fd()), filepath.Base(rel), &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return fmt.Errorf("%w: %s is a symlink: refused (no path under %s may go through a symlink)", errdefs.ErrInvalidArgument, p, root)
	}
	return nil
}
