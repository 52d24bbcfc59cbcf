package sandbox

import (
	"strings"
	"testing"

	"github.com/vessel-containers/vessel/internal/oci"
)

func TestMemoryStorages(t *testing.T) {
	plan := &oci.Container{MemoryVolumes: []oci.MemoryVolume{
		{Index: 0, Kind: oci.MemoryShm, Source: "/s/shm", SizeBytes: 64 << 20, Mode: 0o1777, GuestPath: "/run/vessel/memory/shm-1"},
		{Index: 1, Kind: oci.MemoryEmptyDir, Source: "/e", Mode: 0o777, UID: 1, GID: 2, GuestPath: "/run/vessel/memory/emptydir-2"},
		{Index: 2, Kind: oci.MemoryHugePages, SizeBytes: 8 << 20, PageSize: 2 << 20, Mode: 0o755, GuestPath: "/run/vessel/memory/hugepages-3"},
	}}
	got := memoryStorages(plan)
	want := []string{
		"ephemeral vessel-shm tmpfs /run/vessel/memory/shm-1 nosuid,nodev,mode=1777,uid=0,gid=0,size=65536k",
		"ephemeral vessel-emptydir tmpfs /run/vessel/memory/emptydir-2 nosuid,nodev,mode=0777,uid=1,gid=2",
		"hugetlbfs vessel-hugepages hugetlbfs /run/vessel/memory/hugepages-3 nosuid,nodev,mode=0755,uid=0,gid=0,pagesize=2048k,size=8388608",
	}
	if len(got) != len(want) {
		t.Fatalf("got %d storages, want %d", len(got), len(want))
	}
	for i, s := range got {
		line := strings.Join([]string{s.GetDriver(), s.GetSource(), s.GetFstype(), s.GetMountPoint(), strings.Join(s.GetOptions(), ",")}, " ")
		if line != want[i] {
			t.Errorf("storage %d:\n got %s\nwant %s", i, line, want[i])
		}
	}
}
