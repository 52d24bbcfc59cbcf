//go:build linux

package storage

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// resolveBeneath is how every path under the root is resolved: one component at a time,
// never through a symlink (a container with access to the shared directory could have
// planted one), never out of the directory it starts from.
const resolveBeneath = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

// Rel checks lexically that p is an absolute path strictly under root and returns it
// relative to root. It resolves nothing: OpenDir does, without following symlinks.
func Rel(root, p string) (string, error) {
	if p == "" {
		return "", fmt.Errorf("%w: path is empty", errdefs.ErrInvalidArgument)
	}
	if !filepath.IsAbs(p) {
		return "", fmt.Errorf("%w: path %q must be absolute and under %s/", errdefs.ErrInvalidArgument, p, root)
	}
	rel, err := filepath.Rel(root, filepath.Clean(p))
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("%w: path %q is outside %s/ (only paths under it are allowed)", errdefs.ErrInvalidArgument, p, root)
	}
	return rel, nil
}

// OpenDir opens the directory rel (relative to root, "" or "." for root itself) for reading,
// creating missing directories with mode when create is set. Each component is opened with
// openat2 from the directory before it with RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS: a symlink
// anywhere in rel is refused, not followed, and the returned file is the directory that was
// checked, so using it (fchmod, mounting onto /proc/self/fd/N, *at calls) cannot be
// redirected by a rename or a symlink swapped in afterwards.
//
// root itself is trusted (the agent's own /run/vessel, which no container can reach before
// the agent made it) and is created when missing if create is set.
func OpenDir(root, rel string, mode os.FileMode, create bool) (*os.File, error) {
	if create {
		if err := os.MkdirAll(root, 0o755); err != nil {
			return nil, fmt.Errorf("create %s: %w", root, err)
		}
	}
	dirfd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", root, err)
	}
	walked := root
	for _, name := range strings.Split(filepath.Clean(rel), "/") {
		if name == "." || name == "" {
			continue
		}
		if name == ".." {
			unix.Close(dirfd)
			return nil, fmt.Errorf("%w: path %q under %s has a \"..\" component", errdefs.ErrInvalidArgument, rel, root)
		}
		fd, err := openComponent(dirfd, name, mode, create)
		if err != nil && isSymlinkAt(dirfd, name) {
			// O_DIRECTORY|O_NOFOLLOW on a symlink fails with ENOTDIR or ELOOP.
			err = unix.ELOOP
		}
		unix.Close(dirfd)
		walked = filepath.Join(walked, name)
		if err != nil {
			return nil, pathError(walked, err)
		}
		dirfd = fd
	}
	return os.NewFile(uintptr(dirfd), walked), nil
}

// openComponent opens (and, when create is set, first makes) the directory name in dirfd.
func openComponent(dirfd int, name string, mode os.FileMode, create bool) (int, error) {
	how := &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC, Resolve: resolveBeneath}
	for {
		fd, err := unix.Openat2(dirfd, name, how)
		if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
			continue
		}
		if !errors.Is(err, unix.ENOENT) || !create {
			return fd, err
		}
		if err := unix.Mkdirat(dirfd, name, uint32(mode.Perm())); err != nil && !errors.Is(err, unix.EEXIST) {
			return -1, err
		}
		create = false // made it (or someone else did): open it once more, without a loop
	}
}

// isSymlinkAt reports whether name in dirfd is a symlink (without following it).
func isSymlinkAt(dirfd int, name string) bool {
	var st unix.Stat_t
	return unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK
}

// pathError names what was wrong with path: a symlink, or not a directory.
func pathError(path string, err error) error {
	switch {
	case errors.Is(err, unix.ELOOP):
		return fmt.Errorf("%w: %s is a symlink: refused (no path under the agent's root may go through a symlink)", errdefs.ErrInvalidArgument, path)
	case errors.Is(err, unix.ENOTDIR):
		return fmt.Errorf("%w: %s is not a directory", errdefs.ErrInvalidArgument, path)
	case errors.Is(err, unix.ENOENT):
		return fmt.Errorf("%s: %w", path, errdefs.ErrNotFound)
	case errors.Is(err, unix.EXDEV):
		return fmt.Errorf("%w: %s escapes its parent directory", errdefs.ErrInvalidArgument, path)
	}
	return fmt.Errorf("open %s: %w", path, err)
}

// FdPath is the /proc path that names f itself: mount(2) and umount(2) given it act on the
// directory f was opened on, whatever the path that led there has become since.
func FdPath(f *os.File) string { return fmt.Sprintf("/proc/self/fd/%d", f.Fd()) }
