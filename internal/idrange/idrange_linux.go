package idrange

import "syscall"

// Mappings is r as the uid and gid map of a user namespace.
func (r Range) Mappings() []syscall.SysProcIDMap {
	return []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(r.Start), Size: int(r.Size)}}
}
