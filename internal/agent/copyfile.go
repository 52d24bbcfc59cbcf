//go:build linux

package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
	"github.com/vessel-containers/vessel/internal/agent/storage"
)

// maxCopyChunk is the largest data part of one CopyFile request.
const maxCopyChunk = 1 << 20

// maxCopyFileSize bounds file_size: the file is assembled in the guest's memory (/run is
// the initramfs root), so the host's copies (configuration files; Kubernetes caps a Secret
// or ConfigMap at 1 MiB) get ample room while one request cannot fill the guest's memory.
const maxCopyFileSize = 64 << 20

// fileWriter writes files the host copies in with CopyFile, confined under root. Every
// path is opened without following a symlink (storage.OpenDir), and the last component is
// acted on relative to its opened parent with the *at calls that do not follow it either:
// a symlink a container planted anywhere in the path is refused or replaced, never written
// through.
type fileWriter struct {
	root string
	// mu serializes CopyFile requests: parts of one file must not interleave with another
	// writer of the same temporary file.
	mu sync.Mutex
}

func newFileWriter(root string) *fileWriter { return &fileWriter{root: filepath.Clean(root)} }

// CopyFile writes one part of a file, a directory or a symlink into the guest.
func (s *Service) CopyFile(ctx context.Context, req *agentv1.CopyFileRequest) (*agentv1.Empty, error) {
	if err := s.files.copy(req); err != nil {
		return nil, err
	}
	return &agentv1.Empty{}, nil
}

// tempName is where the parts of the file name are assembled until the last one arrives.
func tempName(name string) string { return "." + name + ".vessel-copy" }

func (w *fileWriter) copy(req *agentv1.CopyFileRequest) error {
	rel, err := storage.Rel(w.root, req.GetPath())
	if err != nil {
		return fmt.Errorf("copy file: path: %w", err)
	}
	if len(req.GetData()) > maxCopyChunk {
		return fmt.Errorf("%w: copy %s: data part is %d bytes, at most %d", errdefs.ErrInvalidArgument, req.GetPath(), len(req.GetData()), maxCopyChunk)
	}
	dirMode := fs.FileMode(req.GetDirMode()).Perm()
	if dirMode == 0 {
		dirMode = 0o755
	}
	perm := fileMode(req.GetFileMode())
	w.mu.Lock()
	defer w.mu.Unlock()
	parentRel, name := filepath.Split(rel)
	switch req.GetFileMode() & unix.S_IFMT {
	case unix.S_IFDIR:
		parent, err := storage.OpenDir(w.root, parentRel, dirMode, true)
		if err != nil {
			return fmt.Errorf("copy %s: create parent: %w", req.GetPath(), err)
		}
		parent.Close()
		dir, err := storage.OpenDir(w.root, rel, perm, true)
		if err != nil {
			return fmt.Errorf("copy %s: mkdir: %w", req.GetPath(), err)
		}
		defer dir.Close()
		if err := chown(req, dir.Chown); err != nil {
			return err
		}
		if err := dir.Chmod(perm); err != nil {
			return fmt.Errorf("copy %s: chmod: %w", req.GetPath(), err)
		}
		return setMtime(req, int(dir.Fd()), "", 0)
	case unix.S_IFLNK:
		if req.GetSymlinkTarget() == "" {
			return fmt.Errorf("%w: copy %s: symlink_target is empty", errdefs.ErrInvalidArgument, req.GetPath())
		}
		parent, err := storage.OpenDir(w.root, parentRel, dirMode, true)
		if err != nil {
			return fmt.Errorf("copy %s: create parent: %w", req.GetPath(), err)
		}
		defer parent.Close()
		// Made under a temporary name and renamed over what is there, so that a process in
		// the guest sees the old link or the new one, never none (kubelet's ..data swap).
		dfd := int(parent.Fd())
		tmp := tempName(name)
		if err := unix.Unlinkat(dfd, tmp, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("copy %s: remove stale temporary link: %w", req.GetPath(), err)
		}
		if err := unix.Symlinkat(req.GetSymlinkTarget(), dfd, tmp); err != nil {
			return fmt.Errorf("copy %s: symlink: %w", req.GetPath(), err)
		}
		err = chown(req, func(uid, gid int) error {
			return unix.Fchownat(dfd, tmp, uid, gid, unix.AT_SYMLINK_NOFOLLOW)
		})
		if err == nil {
			err = setMtime(req, dfd, tmp, unix.AT_SYMLINK_NOFOLLOW)
		}
		if err == nil {
			if err = unix.Renameat(dfd, tmp, dfd, name); err != nil {
				err = fmt.Errorf("copy %s: rename into place: %w", req.GetPath(), err)
			}
		}
		if err != nil {
			_ = unix.Unlinkat(dfd, tmp, 0)
		}
		return err
	case unix.S_IFREG, 0:
		parent, err := storage.OpenDir(w.root, parentRel, dirMode, true)
		if err != nil {
			return fmt.Errorf("copy %s: create parent: %w", req.GetPath(), err)
		}
		defer parent.Close()
		return w.writePart(parent, name, perm, req)
	default:
		return fmt.Errorf("%w: copy %s: file_mode %#o is not a regular file, directory or symlink", errdefs.ErrInvalidArgument, req.GetPath(), req.GetFileMode())
	}
}

// writePart appends one part to the temporary file in parent and renames it to name after
// the last part. Parts must come in order without gaps.
//
// Preconditions: w.mu is held.
func (w *fileWriter) writePart(parent *os.File, name string, perm fs.FileMode, req *agentv1.CopyFileRequest) error {
	size, off, data := req.GetFileSize(), req.GetOffset(), req.GetData()
	if size < 0 || off < 0 {
		return fmt.Errorf("%w: copy %s: file_size %d and offset %d must not be negative", errdefs.ErrInvalidArgument, req.GetPath(), size, off)
	}
	if size > maxCopyFileSize {
		return fmt.Errorf("%w: copy %s: file_size %d is over the limit of %d bytes", errdefs.ErrInvalidArgument, req.GetPath(), size, maxCopyFileSize)
	}
	if off+int64(len(data)) > size {
		return fmt.Errorf("%w: copy %s: part [%d, %d) goes past file_size %d", errdefs.ErrInvalidArgument, req.GetPath(), off, off+int64(len(data)), size)
	}
	dfd := int(parent.Fd())
	tmp := tempName(name)
	flags := unix.O_WRONLY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	if off == 0 {
		// A fresh file, never one that is there: what is there may be a hard link to a
		// file elsewhere, which O_TRUNC would truncate.
		if err := unix.Unlinkat(dfd, tmp, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("copy %s: remove stale temporary file: %w", req.GetPath(), err)
		}
		flags |= unix.O_CREAT | unix.O_EXCL
	}
	fd, err := unix.Openat(dfd, tmp, flags, 0o600)
	if errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("%w: copy %s: part at offset %d, but no earlier part (offset 0 starts a file)", errdefs.ErrInvalidArgument, req.GetPath(), off)
	}
	if err != nil {
		return fmt.Errorf("copy %s: open temporary file: %w", req.GetPath(), err)
	}
	f := os.NewFile(uintptr(fd), tmp)
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("copy %s: %w", req.GetPath(), err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: copy %s: temporary file %s is not a regular file", errdefs.ErrInvalidArgument, req.GetPath(), tmp)
	}
	if fi.Size() != off {
		return fmt.Errorf("%w: copy %s: part at offset %d, expected offset %d", errdefs.ErrInvalidArgument, req.GetPath(), off, fi.Size())
	}
	if _, err := f.WriteAt(data, off); err != nil {
		return fmt.Errorf("copy %s: write: %w", req.GetPath(), err)
	}
	if off+int64(len(data)) < size {
		return nil
	}
	// chown before chmod: chown clears setuid and setgid.
	if err := chown(req, f.Chown); err != nil {
		return err
	}
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("copy %s: chmod: %w", req.GetPath(), err)
	}
	if err := setMtime(req, int(f.Fd()), "", 0); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("copy %s: close: %w", req.GetPath(), err)
	}
	if err := unix.Renameat(dfd, tmp, dfd, name); err != nil {
		return fmt.Errorf("copy %s: rename into place: %w", req.GetPath(), err)
	}
	return nil
}

// fileMode converts the permission, setuid, setgid and sticky bits of a Unix mode.
func fileMode(m uint32) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	if m&unix.S_ISUID != 0 {
		mode |= fs.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		mode |= fs.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		mode |= fs.ModeSticky
	}
	return mode
}

// chown applies uid/gid with fn; -1 keeps the current value.
func chown(req *agentv1.CopyFileRequest, fn func(uid, gid int) error) error {
	uid, gid := int(req.GetUid()), int(req.GetGid())
	if uid < 0 && gid < 0 {
		return nil
	}
	if err := fn(uid, gid); err != nil {
		return fmt.Errorf("copy %s: chown %d:%d: %w", req.GetPath(), uid, gid, err)
	}
	return nil
}

// setMtime sets the modification time the request carries (none when mtime_ns is 0) on
// name in dirfd, or on dirfd itself when name is empty; the access time is left alone.
func setMtime(req *agentv1.CopyFileRequest, dirfd int, name string, flags int) error {
	ns := req.GetMtimeNs()
	if ns == 0 {
		return nil
	}
	ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, unix.NsecToTimespec(ns)}
	var err error
	if name == "" {
		err = unix.UtimesNanoAt(dirfd, "", ts, unix.AT_EMPTY_PATH)
	} else {
		err = unix.UtimesNanoAt(dirfd, name, ts, flags)
	}
	if err != nil {
		return fmt.Errorf("copy %s: set mtime: %w", req.GetPath(), err)
	}
	return nil
}

// RemovePath removes a file, symlink or directory that was copied in.
func (s *Service) RemovePath(ctx context.Context, req *agentv1.RemovePathRequest) (*agentv1.Empty, error) {
	if err := s.files.remove(req.GetPath(), req.GetRecursive()); err != nil {
		return nil, err
	}
	return &agentv1.Empty{}, nil
}

// remove removes p under the writer's root without following a symlink anywhere: the
// parent is opened as CopyFile opens it, the last component is removed relative to it,
// and a directory's contents are walked through descriptors opened beneath it. A path that
// is not there is no error.
func (w *fileWriter) remove(p string, recursive bool) error {
	rel, err := storage.Rel(w.root, p)
	if err != nil {
		return fmt.Errorf("remove path: %w", err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	parentRel, name := filepath.Split(rel)
	parent, err := storage.OpenDir(w.root, parentRel, 0, false)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove %s: %w", p, err)
	}
	defer parent.Close()
	if err := removeAt(int(parent.Fd()), name, recursive); err != nil {
		return fmt.Errorf("remove %s: %w", p, err)
	}
	return nil
}

// removeAt removes name in dirfd; a directory only when empty unless recursive.
func removeAt(dirfd int, name string, recursive bool) error {
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		if err := unix.Unlinkat(dirfd, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return err
		}
		return nil
	}
	if recursive {
		fd, err := unix.Openat2(dirfd, name, &unix.OpenHow{
			Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
		})
		if err != nil {
			return fmt.Errorf("open %s: %w", name, err)
		}
		dir := os.NewFile(uintptr(fd), name)
		entries, err := dir.ReadDir(-1)
		if err == nil {
			for _, e := range entries {
				if err = removeAt(fd, e.Name(), true); err != nil {
					err = fmt.Errorf("%s: %w", name, err)
					break
				}
			}
		}
		dir.Close()
		if err != nil {
			return err
		}
	}
	if err := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return err
	}
	return nil
}
