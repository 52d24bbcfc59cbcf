package sandbox

import (
	"fmt"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
	"github.com/vessel-containers/vessel/internal/oci"
)

// memoryStorages are the guest file systems of the container's memory volumes
// (oci.MemoryVolume): a tmpfs ("ephemeral" storage) of the host tmpfs's size for /dev/shm
// and memory-backed emptyDirs, a hugetlbfs of the container's hugepage limit for huge
// pages, each at the volume's guest path, which the guest spec binds. The agent mounts a
// storage once per mount point and unmounts it with its last user, so the containers of a
// sandbox that bind one host tmpfs share one guest tmpfs: identical requests for one source,
// as every field here comes from the source. Nothing of a memory volume is shared with the
// host: its content lives in the guest's memory only.
func memoryStorages(plan *oci.Container) []*agentv1.Storage {
	out := make([]*agentv1.Storage, 0, len(plan.MemoryVolumes))
	for _, v := range plan.MemoryVolumes {
		opts := []string{"nosuid", "nodev", fmt.Sprintf("mode=%04o", v.Mode), fmt.Sprintf("uid=%d", v.UID), fmt.Sprintf("gid=%d", v.GID)}
		if v.Kind == oci.MemoryHugePages {
			opts = append(opts, fmt.Sprintf("pagesize=%dk", v.PageSize>>10), fmt.Sprintf("size=%d", v.SizeBytes))
			out = append(out, &agentv1.Storage{Driver: "hugetlbfs", Source: "vessel-hugepages", Fstype: "hugetlbfs", Options: opts, MountPoint: v.GuestPath})
			continue
		}
		if v.SizeBytes > 0 {
			opts = append(opts, fmt.Sprintf("size=%dk", (v.SizeBytes+1023)>>10))
		}
		out = append(out, &agentv1.Storage{Driver: "ephemeral", Source: "vessel-" + string(v.Kind), Fstype: "tmpfs", Options: opts, MountPoint: v.GuestPath})
	}
	return out
}
