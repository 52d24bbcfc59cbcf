//go:build linux

package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
)

var _ agentv1.VolumeService = (*Service)(nil)

// VolumeStats is the usage (statfs) of a file system the storage manager mounted; any
// other path is refused, so the host learns nothing of the containers' own mounts.
func (s *Service) VolumeStats(_ context.Context, r *agentv1.VolumeStatsRequest) (*agentv1.VolumeStatsResponse, error) {
	mp := filepath.Clean(r.GetMountPoint())
	if !slices.Contains(s.storage.Mounted(), mp) {
		return nil, fmt.Errorf("%w: volume stats: no storage is mounted at %q", errdefs.ErrNotFound, r.GetMountPoint())
	}
	var st unix.Statfs_t
	if err := unix.Statfs(mp, &st); err != nil {
		return nil, fmt.Errorf("volume stats: statfs %s: %w", mp, err)
	}
	bs := uint64(st.Bsize) //nolint:gosec // a block size is positive
	return &agentv1.VolumeStatsResponse{
		BytesTotal: st.Blocks * bs, BytesFree: st.Bfree * bs, BytesAvailable: st.Bavail * bs,
		InodesTotal: st.Files, InodesFree: st.Ffree,
	}, nil
}

// ext4IocResizeFS is EXT4_IOC_RESIZE_FS, _IOW('f', 16, __u64): grow a mounted ext4 file
// system to the given count of blocks.
const ext4IocResizeFS = 0x40086610

// diskGrowTimeout bounds the wait for the guest to see its disk's new capacity, which
// virtio-blk's configuration change interrupt brings at once.
const diskGrowTimeout = 10 * time.Second

// diskGrowPoll is the interval at which the disk's size in sysfs is read while waiting.
const diskGrowPoll = 10 * time.Millisecond

// ResizeVolume grows the ext4 file system a storage mounted at the mount point to the
// request's size, online (EXT4_IOC_RESIZE_FS), after waiting until its disk is at least
// that large.
func (s *Service) ResizeVolume(ctx context.Context, r *agentv1.ResizeVolumeRequest) (*agentv1.Empty, error) {
	mp := filepath.Clean(r.GetMountPoint())
	if !slices.Contains(s.storage.Mounted(), mp) {
		return nil, fmt.Errorf("%w: resize volume: no storage is mounted at %q", errdefs.ErrNotFound, r.GetMountPoint())
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(mp, &fs); err != nil {
		return nil, fmt.Errorf("resize volume: statfs %s: %w", mp, err)
	}
	if fs.Type != unix.EXT4_SUPER_MAGIC {
		return nil, fmt.Errorf("%w: resize volume %s: file system %s cannot be grown online; only ext4 (and ext2/ext3 mounted by the ext4 driver) can", errdefs.ErrNotImplemented, mp, fsTypeName(fs.Type))
	}
	bs := uint64(fs.Bsize) //nolint:gosec // a block size is positive
	blocks, err := resizeBlocks(r.GetSize(), bs, fs.Blocks)
	if err != nil {
		return nil, fmt.Errorf("%w: resize volume %s: %w", errdefs.ErrInvalidArgument, mp, err)
	}
	var st unix.Stat_t
	if err := unix.Stat(mp, &st); err != nil {
		return nil, fmt.Errorf("resize volume: stat %s: %w", mp, err)
	}
	sizeFile := fmt.Sprintf("/sys/dev/block/%d:%d/size", unix.Major(st.Dev), unix.Minor(st.Dev))
	if err := waitDiskSize(ctx, sizeFile, blocks*bs); err != nil {
		return nil, fmt.Errorf("resize volume %s: %w", mp, err)
	}
	d, err := os.Open(mp)
	if err != nil {
		return nil, fmt.Errorf("resize volume: %w", err)
	}
	defer d.Close()
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, d.Fd(), ext4IocResizeFS, uintptr(unsafe.Pointer(&blocks))); e != 0 { //nolint:gosec // G103: the ioctl needs a raw pointer
		return nil, fmt.Errorf("resize volume %s: EXT4_IOC_RESIZE_FS to %d blocks of %d bytes: %w", mp, blocks, bs, e)
	}
	return &agentv1.Empty{}, nil
}

// resizeBlocks is the block count of a file system of size bytes in blocks of bs bytes,
// which must not be fewer than the current count; statfs's count leaves out ext4's
// overhead, so the kernel refuses a shrink this misses.
func resizeBlocks(size, bs, current uint64) (uint64, error) {
	if bs == 0 {
		return 0, errors.New("file system block size is 0")
	}
	n := size / bs
	if n < current {
		return 0, fmt.Errorf("size %d bytes is smaller than the file system's %d bytes (%d blocks of %d bytes); file systems are not shrunk", size, current*bs, current, bs)
	}
	return n, nil
}

// waitDiskSize waits until the disk whose sysfs size file (in 512-byte sectors) is
// sizeFile holds at least want bytes, reading it every diskGrowPoll up to diskGrowTimeout.
func waitDiskSize(ctx context.Context, sizeFile string, want uint64) error {
	ctx, cancel := context.WithTimeout(ctx, diskGrowTimeout)
	defer cancel()
	t := time.NewTicker(diskGrowPoll)
	defer t.Stop()
	for {
		data, err := os.ReadFile(sizeFile)
		if err != nil {
			return fmt.Errorf("disk size: %w", err)
		}
		sectors, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
		if err != nil {
			return fmt.Errorf("disk size in %s: %w", sizeFile, err)
		}
		if sectors*512 >= want {
			return nil
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return fmt.Errorf("the disk (%s) is %d bytes, not the %d the file system is to take: %w", sizeFile, sectors*512, want, ctx.Err())
		}
	}
}

// fsTypeName names a statfs file system type.
func fsTypeName(t int64) string {
	switch t {
	case unix.XFS_SUPER_MAGIC:
		return "xfs"
	case unix.BTRFS_SUPER_MAGIC:
		return "btrfs"
	case unix.TMPFS_MAGIC:
		return "tmpfs"
	case unix.MSDOS_SUPER_MAGIC:
		return "vfat"
	case unix.SQUASHFS_MAGIC:
		return "squashfs"
	case unix.EROFS_SUPER_MAGIC_V1:
		return "erofs"
	case unix.F2FS_SUPER_MAGIC:
		return "f2fs"
	}
	return fmt.Sprintf("of type %#x", t)
}
