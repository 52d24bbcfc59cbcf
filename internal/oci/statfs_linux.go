package oci

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// statfsSize is the size in bytes of the file system holding path.
func statfsSize(path string) (uint64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", path, err)
	}
	return st.Blocks * uint64(st.Bsize), nil
}
