package idrange

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/containerd/containerd/v2/core/mount"
)

// UserNS opens a user namespace whose uid and gid maps are r (namespace id N is host id
// Start+N), for idmapped mounts (mount_setattr MOUNT_ATTR_IDMAP): through such a mount
// a file owned by on-disk id N appears owned by host id Start+N, and the other way round
// for what is created or chowned through it. The caller closes it.
func (r Range) UserNS() (*os.File, error) {
	m := fmt.Sprintf("0:%d:%d", r.Start, r.Size)
	f, err := mount.GetUsernsFD(m, m)
	if err != nil {
		return nil, fmt.Errorf("user namespace on host ids %d-%d: %w", r.Start, r.Start+r.Size-1, err)
	}
	return f, nil
}

// Mappings is r as the uid and gid map of a user namespace.
func (r Range) Mappings() []syscall.SysProcIDMap {
	return []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(r.Start), Size: int(r.Size)}}
}

// OfProcess is the slot the process pid runs on: its uid map as the kernel reports it,
// one line mapping 0 onto Size host ids. ok is false for a process in the host's user
// namespace (or any other map).
func OfProcess(pid int) (r Range, ok bool, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/uid_map", pid))
	if err != nil {
		return Range{}, false, err
	}
	f := strings.Fields(string(b))
	if len(f) != 3 || f[0] != "0" || f[2] != strconv.Itoa(Size) {
		return Range{}, false, nil
	}
	start, err := strconv.ParseUint(f[1], 10, 32)
	if err != nil {
		return Range{}, false, fmt.Errorf("uid map of %d: %w", pid, err)
	}
	return Range{Start: uint32(start), Size: Size}, true, nil
}
