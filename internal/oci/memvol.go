package oci

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Memory volumes are mounts whose content lives in memory: /dev/shm bind-mounted from a
// host tmpfs (containerd's per-sandbox shm, docker's --shm-size), a Kubernetes emptyDir
// of medium Memory (kubelet's tmpfs under .../volumes/kubernetes.io~empty-dir/<name>) and
// huge pages (a hugetlbfs mount, or kubelet's emptyDir of medium HugePages, a hugetlbfs on
// the host). Shared as files, the host's memory would back them and their sizes would not
// hold in the guest; instead the guest mounts a file system of its own of the same kind and
// size (the agent's ephemeral and hugetlbfs storages) and the container binds it.

// GuestMemoryDir is where the agent mounts memory volumes in the guest.
const GuestMemoryDir = "/run/vessel/memory"

// MemoryKind is what a memory volume is.
type MemoryKind string

const (
	// MemoryShm is /dev/shm bind-mounted from a host tmpfs.
	MemoryShm MemoryKind = "shm"
	// MemoryEmptyDir is a Kubernetes emptyDir of medium Memory.
	MemoryEmptyDir MemoryKind = "emptydir"
	// MemoryHugePages is a hugetlbfs mount.
	MemoryHugePages MemoryKind = "hugepages"
)

// MemoryVolume is one memory volume of a container.
type MemoryVolume struct {
	// Index of the mount in Container.Mounts.
	Index int
	Kind  MemoryKind
	// Source is the host source of a bind mount; "" for a hugetlbfs mount of its own.
	Source string
	// SizeBytes is the guest file system's size: the host tmpfs's (0 when it has no
	// limit), or for huge pages the container's hugepage limit of that page size.
	SizeBytes uint64
	// PageSize is the huge page size in bytes (MemoryHugePages).
	PageSize uint64
	// Mode, UID and GID are the host source directory's (its permission bits with
	// setuid, setgid and sticky), given to the guest's file system root.
	Mode     uint32
	UID, GID uint32
	// GuestPath is the guest's mount point. A tmpfs volume's is derived from its source,
	// so every container of the sandbox binding that source shares one guest tmpfs; huge
	// pages are sized per container, each container gets its own.
	GuestPath string
}

// FSInfo is what a memory volume's host source is (Options.MemoryFS).
type FSInfo struct {
	// Type is statfs(2)'s f_type.
	Type int64
	// Size is the file system's size in bytes (0 when it has no limit); BlockSize its
	// block size, the page size of a hugetlbfs.
	Size, BlockSize uint64
	// Mode (permission bits with setuid, setgid, sticky), UID and GID of the directory.
	Mode     uint32
	UID, GID uint32
}

// File system magic numbers (linux/magic.h).
const (
	tmpfsMagic     = 0x01021994
	hugetlbfsMagic = 0x958458f6
)

// emptyDirPath matches the host path kubelet gives an emptyDir volume.
var emptyDirPath = regexp.MustCompile(`/pods/[^/]+/volumes/kubernetes\.io~empty-dir/[^/]+$`)

// memoryVolumesOf finds the memory volumes among mounts. fsInfo describes a bind
// source; one it cannot describe is not a memory volume (sharing it reports what is wrong).
// A huge pages volume takes its size from res's hugepage limit of its page size, and is
// refused without one.
func memoryVolumesOf(id string, mounts []specs.Mount, res *specs.LinuxResources, fsInfo func(string) (FSInfo, error)) ([]MemoryVolume, error) {
	var out []MemoryVolume
	for i, m := range mounts {
		v := MemoryVolume{Index: i}
		switch {
		case IsBind(m):
			fi, err := fsInfo(m.Source)
			if err != nil {
				continue
			}
			switch {
			case fi.Type == hugetlbfsMagic:
				v.Kind, v.PageSize = MemoryHugePages, fi.BlockSize
			case fi.Type != tmpfsMagic:
				continue
			case m.Destination == shmPath:
				v.Kind = MemoryShm
			case emptyDirPath.MatchString(path.Clean(m.Source)):
				v.Kind = MemoryEmptyDir
			default:
				continue
			}
			v.Source, v.SizeBytes, v.Mode, v.UID, v.GID = m.Source, fi.Size, fi.Mode, fi.UID, fi.GID
		case m.Type == "hugetlbfs":
			v.Kind, v.PageSize, v.Mode = MemoryHugePages, 2<<20, 0o755
			for _, o := range m.Options {
				if s, ok := strings.CutPrefix(o, "pagesize="); ok {
					n, ok := parseTmpfsSize(strings.TrimSuffix(strings.TrimSuffix(s, "B"), "b"))
					if !ok {
						return nil, fmt.Errorf("mounts[%d] (%s): hugetlbfs option %q is not a page size", i, m.Destination, o)
					}
					v.PageSize = n
				}
			}
		default:
			continue
		}
		key := v.Source
		if v.Kind == MemoryHugePages {
			limit, err := hugePageLimit(res, v.PageSize)
			if err != nil {
				return nil, fmt.Errorf("mounts[%d] (%s): hugetlbfs: %w", i, m.Destination, err)
			}
			v.SizeBytes = limit
			key = fmt.Sprintf("%s\x00%d\x00%s", id, i, v.Source)
		}
		sum := sha256.Sum256([]byte(key))
		v.GuestPath = path.Join(GuestMemoryDir, string(v.Kind)+"-"+hex.EncodeToString(sum[:8]))
		out = append(out, v)
	}
	return out, nil
}

// hugePageLimit is res's hugepage limit for pages of pageSize bytes, rounded down to whole
// pages; it is an error when there is none or it holds no page.
func hugePageLimit(res *specs.LinuxResources, pageSize uint64) (uint64, error) {
	name := pageSizeName(pageSize)
	if res != nil {
		for _, l := range res.HugepageLimits {
			n, ok := parseTmpfsSize(strings.TrimSuffix(strings.TrimSuffix(l.Pagesize, "B"), "b"))
			if !ok || n != pageSize {
				continue
			}
			if l.Limit < pageSize {
				return 0, fmt.Errorf("linux.resources.hugepageLimits %s limit %d is less than one page", l.Pagesize, l.Limit)
			}
			return l.Limit / pageSize * pageSize, nil
		}
	}
	return 0, fmt.Errorf("no hugepage limit for page size %s in linux.resources.hugepageLimits: the guest reserves as many huge pages as the limit allows, and needs one", name)
}

// pageSizeName writes a page size as the runtime spec names it ("2MB", "1GB", "64KB").
func pageSizeName(n uint64) string {
	for _, u := range []struct {
		suffix string
		shift  uint
	}{{"GB", 30}, {"MB", 20}, {"KB", 10}} {
		if n >= 1<<u.shift && n%(1<<u.shift) == 0 {
			return strconv.FormatUint(n>>u.shift, 10) + u.suffix
		}
	}
	return strconv.FormatUint(n, 10) + "B"
}

// MemoryVolume returns the memory volume at index i of Mounts, if it is one.
func (c *Container) MemoryVolume(i int) (MemoryVolume, bool) {
	k := slices.IndexFunc(c.MemoryVolumes, func(v MemoryVolume) bool { return v.Index == i })
	if k < 0 {
		return MemoryVolume{}, false
	}
	return c.MemoryVolumes[k], true
}

// guestMemoryMount is the container's bind of the guest's mount of memory volume v, with
// the mount's flag options (a hugetlbfs mount's own options go to the guest's mount).
func guestMemoryMount(m specs.Mount, v MemoryVolume) specs.Mount {
	opts := []string{"rbind"}
	for _, o := range m.Options {
		if o != "bind" && o != "rbind" && slices.Contains(mountFlagOptions, o) {
			opts = append(opts, o)
		}
	}
	return specs.Mount{Destination: m.Destination, Type: "bind", Source: v.GuestPath, Options: opts}
}
