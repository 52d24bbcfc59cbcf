package idrange

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// identity names the directory dir (not followed if a symlink) apart from any directory
// made later at the same path: its inode number and birth time (change time where the
// file system records no birth time), to the nanosecond.
func identity(dir string) (string, error) {
	var st unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, dir, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_INO|unix.STATX_BTIME|unix.STATX_CTIME, &st); err != nil {
		return "", &os.PathError{Op: "statx", Path: dir, Err: err}
	}
	t := st.Ctime
	if st.Mask&unix.STATX_BTIME != 0 {
		t = st.Btime
	}
	return fmt.Sprintf("%d.%d.%09d", st.Ino, t.Sec, t.Nsec), nil
}
