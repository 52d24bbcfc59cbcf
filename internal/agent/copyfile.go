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
	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
	"github.com/vessel-containers/vessel/internal/agent/storage"
)

// maxCopyChunk is the largest data part of one CopyFile request.
const maxCopyChunk = 1 << 20

// fileWriter writes files the host copies in with CopyFile, confined under root.
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

// resolve confines p under the root and resolves symlinks in its parent directories (inside
// the root); the last component is not followed, so a symlink there is replaced, not
// written through.
func (w *fileWriter) resolve(p string) (string, error) {
	if _, err := storage.Confine(w.root, p); err != nil {
		return "", err
	}
	clean := filepath.Clean(p)
	rel, err := filepath.Rel(w.root, filepath.Dir(clean))
	if err != nil {
		return "", fmt.Errorf("%w: path %q: %w", errdefs.ErrInvalidArgument, p, err)
	}
	dir, err := securejoin.SecureJoin(w.root, rel)
	if err != nil {
		return "", fmt.Errorf("resolve %q: %w", p, err)
	}
	return filepath.Join(dir, filepath.Base(clean)), nil
}

// tempName is where the parts of path are assembled until the last one arrives.
func tempName(path string) string {
	return filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".vessel-copy")
}

func (w *fileWriter) copy(req *agentv1.CopyFileRequest) error {
	path, err := w.resolve(req.GetPath())
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
	if err := os.MkdirAll(filepath.Dir(path), dirMode); err != nil {
		return fmt.Errorf("copy %s: create parent: %w", req.GetPath(), err)
	}
	switch req.GetFileMode() & unix.S_IFMT {
	case unix.S_IFDIR:
		if err := os.MkdirAll(path, perm); err != nil {
			return fmt.Errorf("copy %s: mkdir: %w", req.GetPath(), err)
		}
		if err := chown(path, req, os.Chown); err != nil {
			return err
		}
		if err := os.Chmod(path, perm); err != nil {
			return fmt.Errorf("copy %s: chmod: %w", req.GetPath(), err)
		}
		return nil
	case unix.S_IFLNK:
		if req.GetSymlinkTarget() == "" {
			return fmt.Errorf("%w: copy %s: symlink_target is empty", errdefs.ErrInvalidArgument, req.GetPath())
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("copy %s: replace: %w", req.GetPath(), err)
		}
		if err := os.Symlink(req.GetSymlinkTarget(), path); err != nil {
			return fmt.Errorf("copy %s: symlink: %w", req.GetPath(), err)
		}
		return chown(path, req, os.Lchown)
	case unix.S_IFREG, 0:
		return w.writePart(path, perm, req)
	default:
		return fmt.Errorf("%w: copy %s: file_mode %#o is not a regular file, directory or symlink", errdefs.ErrInvalidArgument, req.GetPath(), req.GetFileMode())
	}
}

// writePart appends one part to the temporary file and renames it into place after the
// last part. Parts must come in order without gaps.
//
// Preconditions: w.mu is held.
func (w *fileWriter) writePart(path string, perm fs.FileMode, req *agentv1.CopyFileRequest) error {
	size, off, data := req.GetFileSize(), req.GetOffset(), req.GetData()
	if size < 0 || off < 0 {
		return fmt.Errorf("%w: copy %s: file_size %d and offset %d must not be negative", errdefs.ErrInvalidArgument, req.GetPath(), size, off)
	}
	if off+int64(len(data)) > size {
		return fmt.Errorf("%w: copy %s: part [%d, %d) goes past file_size %d", errdefs.ErrInvalidArgument, req.GetPath(), off, off+int64(len(data)), size)
	}
	tmp := tempName(path)
	flags := os.O_WRONLY
	if off == 0 {
		flags |= os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(tmp, flags|unix.O_NOFOLLOW, 0o600)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: copy %s: part at offset %d, but no earlier part (offset 0 starts a file)", errdefs.ErrInvalidArgument, req.GetPath(), off)
	}
	if err != nil {
		return fmt.Errorf("copy %s: open temporary file: %w", req.GetPath(), err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("copy %s: %w", req.GetPath(), err)
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
	if err := chown(tmp, req, os.Chown); err != nil {
		return err
	}
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("copy %s: chmod: %w", req.GetPath(), err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("copy %s: close: %w", req.GetPath(), err)
	}
	if err := os.Rename(tmp, path); err != nil {
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

// chown applies uid/gid; -1 keeps the current value.
func chown(path string, req *agentv1.CopyFileRequest, fn func(string, int, int) error) error {
	uid, gid := int(req.GetUid()), int(req.GetGid())
	if uid < 0 && gid < 0 {
		return nil
	}
	if err := fn(path, uid, gid); err != nil {
		return fmt.Errorf("copy %s: chown %d:%d: %w", req.GetPath(), uid, gid, err)
	}
	return nil
}
