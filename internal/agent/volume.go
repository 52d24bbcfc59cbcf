//go:build linux

package agent

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
)

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
