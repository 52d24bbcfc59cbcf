package factory

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/containerd/errdefs"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/vessel-containers/vessel/internal/procid"
)

// lockFile takes a flock on path (created if needed): exclusive or shared. It waits until
// ctx ends. The returned function releases it.
func lockFile(ctx context.Context, path string, exclusive bool) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	// Poll a non-blocking flock so that ctx can end the wait (a blocking flock cannot be
	// interrupted from Go).
	for {
		err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
		if err == nil {
			return func() { _ = f.Close() }, nil // closing the only descriptor unlocks
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			_ = f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if err := sleepCtx(ctx, lockPoll); err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
	}
}

// isMountPoint reports whether dir is a mount point.
func isMountPoint(dir string) (bool, error) {
	ok, err := mountinfo.Mounted(dir)
	if err != nil {
		return false, fmt.Errorf("check mount point %s: %w", dir, err)
	}
	return ok, nil
}

// mountTmpfs mounts a tmpfs of sizeMiB on dir unless something is mounted there already.
// It reports whether it mounted.
func mountTmpfs(dir string, sizeMiB uint64) (bool, error) {
	if mounted, err := isMountPoint(dir); err != nil || mounted {
		return false, err
	}
	opts := fmt.Sprintf("size=%dm,mode=0700", sizeMiB)
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, opts); err != nil {
		return false, fmt.Errorf("mount tmpfs on %s: %w", dir, err)
	}
	return true, nil
}

// unmount unmounts dir if it is a mount point.
func unmount(dir string) error {
	mounted, err := isMountPoint(dir)
	if err != nil || !mounted {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("unmount %s: %w", dir, err)
	}
	return nil
}

// killProcess sends SIGKILL to p if it still runs (same pid and start time). A process
// that is gone, or a zero ID, is not an error.
func killProcess(p procid.ID) error {
	if p.Pid <= 0 {
		return nil
	}
	if err := p.Signal(unix.SIGKILL); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("kill vm: %w", err)
	}
	return nil
}

// sameFileSystem reports whether a and b (existing paths) are on one file system, so that
// rename works between them.
func sameFileSystem(a, b string) (bool, error) {
	var sa, sb unix.Stat_t
	if err := unix.Stat(a, &sa); err != nil {
		return false, fmt.Errorf("stat %s: %w", a, err)
	}
	if err := unix.Stat(b, &sb); err != nil {
		return false, fmt.Errorf("stat %s: %w", b, err)
	}
	return sa.Dev == sb.Dev, nil
}

// moveEntries renames every entry of from into to (replacing empty directories there),
// then removes from. Both must be on one file system. A listening unix socket keeps
// working under its new name; files keep their open descriptors; a directory QEMU exports
// over 9p stays exported (QEMU holds it by descriptor).
func moveEntries(from, to string) error {
	entries, err := os.ReadDir(from)
	if err != nil {
		return fmt.Errorf("move vm files: %w", err)
	}
	for _, e := range entries {
		// rename(2) itself, not os.Rename: that refuses to replace a directory.
		src, dst := filepath.Join(from, e.Name()), filepath.Join(to, e.Name())
		if err := unix.Rename(src, dst); err != nil {
			return fmt.Errorf("move vm files: rename %s to %s: %w", src, dst, err)
		}
	}
	if err := os.Remove(from); err != nil {
		return fmt.Errorf("move vm files: %w", err)
	}
	return nil
}

// allocatedBytes is the disk (tmpfs) space a file uses, which for a sparse memory file is
// what the guest touched.
func allocatedBytes(path string) int64 {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0
	}
	return st.Blocks * 512
}
