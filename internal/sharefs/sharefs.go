// Package sharefs decides how host files reach the guest. This first backend exports one
// host directory per sandbox through virtio-9p (or virtio-fs): container root filesystems
// and bind-mount sources are bind-mounted into it, under a directory per container, and the
// agent mounts the export once at GuestMountPoint.
package sharefs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/containerd/log"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

const (
	// Tag is the 9p / virtio-fs mount tag of the sandbox export.
	Tag = "vessel-shared"
	// GuestMountPoint is where the agent mounts the export in the guest.
	GuestMountPoint = "/run/vessel/shared"
)

// Share is one sandbox's exported directory on the host.
type Share struct {
	dir string
}

// New creates the export directory (mode 0700: only root reads container files through it).
func New(dir string) (*Share, error) {
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("share dir %q is not absolute", dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create share dir: %w", err)
	}
	return &Share{dir: dir}, nil
}

// Open returns the Share for an existing export directory (after a restart).
func Open(dir string) *Share { return &Share{dir: dir} }

// Dir is the host directory exported to the guest.
func (s *Share) Dir() string { return s.dir }

// GuestPath maps a path relative to the export to the path the guest sees.
func GuestPath(rel string) string { return filepath.Join(GuestMountPoint, rel) }

// validName refuses ids and names that could escape the export.
func validName(kind, name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("invalid %s %q for the shared directory", kind, name)
	}
	return nil
}

// Bind bind-mounts the host path src (a directory or a file) into the export as
// <containerID>/<name> and returns the path relative to the export. readonly makes the
// mount read-only on the host side too.
func (s *Share) Bind(ctx context.Context, containerID, name, src string, readonly bool) (string, error) {
	if err := validName("container id", containerID); err != nil {
		return "", err
	}
	if err := validName("share name", name); err != nil {
		return "", err
	}
	fi, err := os.Stat(src)
	if err != nil {
		return "", fmt.Errorf("share %s: %w", src, err)
	}
	rel := filepath.Join(containerID, name)
	dst := filepath.Join(s.dir, rel)
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return "", fmt.Errorf("share %s: %w", src, err)
	}
	if fi.IsDir() {
		err = os.Mkdir(dst, 0o755)
	} else {
		var f *os.File
		f, err = os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err == nil {
			err = f.Close()
		}
	}
	if err != nil {
		return "", fmt.Errorf("share %s: create mount point: %w", src, err)
	}
	if err := unix.Mount(src, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		_ = os.Remove(dst)
		return "", fmt.Errorf("share %s: bind mount onto %s: %w", src, dst, err)
	}
	// Keep the container's mounts from propagating back to the host and vice versa.
	if err := unix.Mount("", dst, "", unix.MS_PRIVATE|unix.MS_REC, ""); err != nil {
		return "", errors.Join(fmt.Errorf("share %s: make mount private: %w", src, err), s.unmountTree(ctx, dst))
	}
	if readonly {
		if err := unix.Mount("", dst, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			return "", errors.Join(fmt.Errorf("share %s: remount read-only: %w", src, err), s.unmountTree(ctx, dst))
		}
	}
	log.G(ctx).WithField("src", src).WithField("dst", dst).Debug("shared with guest")
	return rel, nil
}

// RemoveContainer unmounts and removes everything shared for one container.
func (s *Share) RemoveContainer(ctx context.Context, containerID string) error {
	if err := validName("container id", containerID); err != nil {
		return err
	}
	return s.removeTree(ctx, filepath.Join(s.dir, containerID))
}

// Close unmounts everything in the export and removes the directory. It is safe to call
// on a partly torn down or missing export.
func (s *Share) Close(ctx context.Context) error {
	return s.removeTree(ctx, s.dir)
}

func (s *Share) removeTree(ctx context.Context, root string) error {
	if err := s.unmountTree(ctx, root); err != nil {
		return err
	}
	// Every mount is gone, so RemoveAll cannot reach into a container's files.
	if err := os.RemoveAll(root); err != nil {
		return fmt.Errorf("remove %s: %w", root, err)
	}
	return nil
}

// unmountTree unmounts every mount at or below root, deepest first.
func (s *Share) unmountTree(ctx context.Context, root string) error {
	mounts, err := MountsUnder(root)
	if err != nil {
		return err
	}
	var errs []error
	for _, mp := range mounts {
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mp, err))
			continue
		}
		log.G(ctx).WithField("mountpoint", mp).Debug("unshared")
	}
	return errors.Join(errs...)
}

// MountsUnder lists mount points at or below root, deepest first.
func MountsUnder(root string) ([]string, error) {
	root = filepath.Clean(root)
	infos, err := mountinfo.GetMounts(func(i *mountinfo.Info) (skip, stop bool) {
		under := i.Mountpoint == root || strings.HasPrefix(i.Mountpoint, root+"/")
		return !under, false
	})
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	mps := make([]string, 0, len(infos))
	for _, i := range infos {
		mps = append(mps, i.Mountpoint)
	}
	// Deepest first; a path mounted several times appears once per mount.
	sort.SliceStable(mps, func(a, b int) bool { return len(mps[a]) > len(mps[b]) })
	return mps, nil
}
