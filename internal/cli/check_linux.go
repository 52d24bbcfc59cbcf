package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// cgroupMode tells how cgroups are mounted: "v2" (unified), "hybrid" (v1 controllers plus a
// v2 hierarchy at /sys/fs/cgroup/unified) or "v1".
func cgroupMode() (string, error) {
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &st); err != nil {
		return "", fmt.Errorf("statfs /sys/fs/cgroup: %w", err)
	}
	switch st.Type {
	case unix.CGROUP2_SUPER_MAGIC:
		return "v2 (unified)", nil
	case unix.TMPFS_MAGIC:
		if err := unix.Statfs("/sys/fs/cgroup/unified", &st); err == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			return "hybrid (v1 controllers, v2 at /sys/fs/cgroup/unified)", nil
		}
		return "v1", nil
	}
	return "", fmt.Errorf("/sys/fs/cgroup: file system type %#x is not a cgroup mount", st.Type)
}

// inUserNamespace runs fn with a descriptor of a new user namespace (root maps to host
// uid and gid 100000..165535), owned by a short-lived child that is killed and reaped
// before it returns.
func inUserNamespace(fn func(nsfd int) error) error {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		return fmt.Errorf("user namespace probe: %w", err)
	}
	cmd := exec.Command(sleep, "10")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 100000, Size: 65536}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 100000, Size: 65536}},
		Pdeathsig:   syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("create a user namespace: %w", err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	ns, err := unix.Open("/proc/"+strconv.Itoa(cmd.Process.Pid)+"/ns/user", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open the user namespace: %w", err)
	}
	defer unix.Close(ns)
	return fn(ns)
}

// userNamespaces tells whether a user namespace with a uid range can be created.
func userNamespaces() error {
	return inUserNamespace(func(int) error { return nil })
}

// idmappedMounts tells whether the file system holding dir (or its nearest existing
// parent) takes an idmapped mount: it clones the mount detached, idmaps the clone and
// drops it.
func idmappedMounts(dir string) error {
	dir = filepath.Clean(dir)
	for {
		if _, err := os.Stat(dir); err == nil || !errors.Is(err, fs.ErrNotExist) || dir == "/" {
			break
		}
		dir = filepath.Dir(dir)
	}
	return inUserNamespace(func(ns int) error {
		tree, err := unix.OpenTree(unix.AT_FDCWD, dir, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
		if err != nil {
			return fmt.Errorf("clone the mount of %s: %w", dir, err)
		}
		defer unix.Close(tree)
		attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(ns)}
		if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH, &attr); err != nil {
			return fmt.Errorf("idmap the mount of %s: %w", dir, err)
		}
		return nil
	})
}
