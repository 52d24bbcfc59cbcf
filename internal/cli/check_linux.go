package cli

import (
	"fmt"

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
