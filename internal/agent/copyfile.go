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
		return nil
	case unix.S_IFLNK:
		if req.GetSymlinkTarget() == "" {
			return fmt.Errorf("%w: copy %s: symlink_target is empty", errdefs.ErrInvalidArgument, req.GetPath())
		}
		parent, err := storage.OpenDir(w.root, parentRel, dirMode, true)
		if err != nil {
			return fmt.Errorf("copy %s: create parent: %w", req.GetPath(), err)
		}
		defer parent.Close()
		dfd := int(parent.Fd())
		if err := unix.Unlinkat(dfd, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("copy %s: replace: %w", req.GetPath(), err)
		}
		if err := unix.Symlinkat(req.GetSymlinkTarget(), dfd, name); err != nil {
			return fmt.Errorf("copy %s: symlink: %w", req.GetPath(), err)
		}
		return chown(req, func(uid, gid int) error {
			return unix.Fchownat(dfd, name, uid, gid, unix.AT_SYMLINK_NOFOLLOW)
		})
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
