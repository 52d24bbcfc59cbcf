package oci

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// hostDevice looks the device up in /sys/dev/char or /sys/dev/block; an entry it cannot
// look at counts as present.
func hostDevice(kind byte, major, minor int64) bool {
	dir := "/sys/dev/char"
	if kind == 'b' {
		dir = "/sys/dev/block"
	}
	_, err := os.Lstat(fmt.Sprintf("%s/%d:%d", dir, major, minor))
	return !errors.Is(err, fs.ErrNotExist)
}

// statMemoryFS describes the file system holding path and the directory itself.
func statMemoryFS(path string) (FSInfo, error) {
	var sfs unix.Statfs_t
	if err := unix.Statfs(path, &sfs); err != nil {
		return FSInfo{}, fmt.Errorf("statfs %s: %w", path, err)
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return FSInfo{}, fmt.Errorf("stat %s: %w", path, err)
	}
	return FSInfo{
		Type:      int64(sfs.Type), //nolint:unconvert // int64 on amd64, not on every platform
		Size:      sfs.Blocks * uint64(sfs.Bsize),
		BlockSize: uint64(sfs.Bsize),
		Mode:      st.Mode & 0o7777,
		UID:       st.Uid,
		GID:       st.Gid,
	}, nil
}
