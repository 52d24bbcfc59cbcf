package testutil

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// MemoryCgroup is pid's cgroup in the v1 memory hierarchy, or its v2 cgroup on a host
// without one.
func MemoryCgroup(t testing.TB, pid int) string {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	v2 := ""
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			v2 = parts[2]
		}
		if slices.Contains(strings.Split(parts[1], ","), "memory") {
			return parts[2]
		}
	}
	if v2 == "" {
		t.Fatalf("pid %d: no memory cgroup in %q", pid, data)
	}
	return v2
}

// CgroupV2Root is where the host's cgroup v2 hierarchy is mounted: /sys/fs/cgroup on a
// v2-only host, /sys/fs/cgroup/unified on a hybrid one. The test is skipped without one.
func CgroupV2Root(t testing.TB) string {
	t.Helper()
	for _, dir := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		var st unix.Statfs_t
		if err := unix.Statfs(dir, &st); err == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			return dir
		}
	}
	t.Skip("no cgroup v2 hierarchy at /sys/fs/cgroup or /sys/fs/cgroup/unified")
	return ""
}
