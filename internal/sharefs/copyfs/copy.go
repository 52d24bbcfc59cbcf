// Package copyfs is copy mode (shared_fs = "none"): the VM has no shared file system, and
// the host copies a container's root file system and volumes into the guest with the
// agent's CopyFile (directories, symlinks, regular files in 1 MiB parts, with their modes,
// owners and modification times), then keeps chosen volumes in sync with a watcher
// (Watch): host changes are copied in, host removals removed with RemovePath.
//
// The copies live in a tmpfs in the guest (GuestRoot), sized by the sandbox; Scan measures
// a tree before anything is copied, so a tree that does not fit is refused whole. What
// cannot be copied is refused by name: device nodes, sockets and FIFOs (nothing in the
// guest could stand for them), and a file larger than the agent takes (MaxFileSize).
// Hard links are copied as separate files. The copy is one way: what the container writes
// stays in the guest.
package copyfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
)

const (
	// GuestRoot is the guest directory the copies go to: a tmpfs the sandbox mounts there,
	// under the agent's run directory (CopyFile and RemovePath act only beneath it).
	GuestRoot = "/run/vessel/copy"
	// ChunkSize is the largest data part of one CopyFile request.
	ChunkSize = 1 << 20
	// MaxFileSize is the largest file the agent accepts from CopyFile.
	MaxFileSize = 64 << 20
	// pageSize is what tmpfs allocates in: Scan rounds every file up to it.
	pageSize = 4096
)

// Guest is the agent as copy mode uses it (agentclient.Client).
type Guest interface {
	CopyFile(ctx context.Context, req *agentv1.CopyFileRequest) error
	RemovePath(ctx context.Context, path string, recursive bool) error
}

// GuestRootfs is where a container's root file system is copied in the guest.
func GuestRootfs(containerID string) string {
	return path.Join(GuestRoot, "containers", containerID, "rootfs")
}

// GuestContainerDir is the guest directory of a container's copies.
func GuestContainerDir(containerID string) string {
	return path.Join(GuestRoot, "containers", containerID)
}

// GuestVolume is where the sandbox's volume number n is copied in the guest: one copy per
// host source, shared by the containers that mount it.
func GuestVolume(n uint64) string { return path.Join(GuestRoot, "volumes", strconv.FormatUint(n, 10)) }

// Entry is one host file, directory or symlink to copy.
type Entry struct {
	// Rel is the path below the tree's root ("." for the root itself).
	Rel    string
	Mode   uint32 // Unix mode with the type bits
	Size   int64
	UID    uint32
	GID    uint32
	Mtime  int64 // nanoseconds since the epoch
	Target string
}

// Tree is a host file or directory measured for copying.
type Tree struct {
	// Root is the host path, symlinks in it resolved.
	Root string
	// Dir tells whether Root is a directory.
	Dir bool
	// Entries are in copy order: each directory before what is in it.
	Entries []Entry
	// Bytes is what the copy takes in a tmpfs: file sizes rounded up to whole pages.
	Bytes int64
}

// Scan measures the host file or directory src (a symlink to one is followed, as a bind
// mount follows it) and refuses what copy mode cannot copy.
func Scan(src string) (*Tree, error) {
	root, err := filepath.EvalSymlinks(src)
	if err != nil {
		return nil, fmt.Errorf("copy %s: %w", src, err)
	}
	return scan(root)
}

// scan measures root as it is: a symlink there is an entry, not followed.
func scan(root string) (*Tree, error) {
	src := root
	t := &Tree{Root: root}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		e, err := entryOf(p, rel)
		if err != nil {
			return err
		}
		if rel == "." {
			t.Dir = e.Mode&unix.S_IFMT == unix.S_IFDIR
		}
		t.Entries = append(t.Entries, e)
		t.Bytes += (e.Size + pageSize - 1) / pageSize * pageSize
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("copy %s: %w", src, err)
	}
	return t, nil
}

// entryOf reads what p is, without following a symlink, and refuses what cannot be copied.
func entryOf(p, rel string) (Entry, error) {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return Entry{}, &fs.PathError{Op: "lstat", Path: p, Err: err}
	}
	e := Entry{Rel: rel, Mode: st.Mode, UID: st.Uid, GID: st.Gid, Mtime: st.Mtim.Nano()}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
	case unix.S_IFREG:
		if st.Size > MaxFileSize {
			return Entry{}, fmt.Errorf("%s is %d bytes; copy mode copies files of at most %d bytes (%d MiB)", p, st.Size, MaxFileSize, MaxFileSize>>20)
		}
		e.Size = st.Size
	case unix.S_IFLNK:
		target, err := os.Readlink(p)
		if err != nil {
			return Entry{}, err
		}
		e.Target = target
	case unix.S_IFCHR, unix.S_IFBLK:
		return Entry{}, fmt.Errorf("%s is a device node: copy mode cannot give the guest a host device (use a shared file system, or pass the device with linux.devices)", p)
	case unix.S_IFSOCK:
		return Entry{}, fmt.Errorf("%s is a socket: copy mode cannot connect the guest to a host socket (use a shared file system)", p)
	case unix.S_IFIFO:
		return Entry{}, fmt.Errorf("%s is a FIFO: copy mode cannot connect the guest to a host FIFO (use a shared file system)", p)
	default:
		return Entry{}, fmt.Errorf("%s has file type %#o, which copy mode cannot copy", p, st.Mode&unix.S_IFMT)
	}
	return e, nil
}

// Copy copies the tree to dst in the guest.
func Copy(ctx context.Context, g Guest, t *Tree, dst string) error {
	for _, e := range t.Entries {
		if err := copyEntry(ctx, g, filepath.Join(t.Root, e.Rel), path.Join(dst, filepath.ToSlash(e.Rel)), e); err != nil {
			return err
		}
	}
	return nil
}

// copyEntry copies one entry from the host path src to the guest path dst.
func copyEntry(ctx context.Context, g Guest, src, dst string, e Entry) error {
	req := &agentv1.CopyFileRequest{Path: dst, FileMode: e.Mode, DirMode: 0o755, Uid: int32(e.UID), Gid: int32(e.GID), MtimeNs: e.Mtime}
	switch e.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return wrap(src, g.CopyFile(ctx, req))
	case unix.S_IFLNK:
		req.SymlinkTarget = e.Target
		return wrap(src, g.CopyFile(ctx, req))
	}
	f, err := os.OpenFile(src, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("copy %s: it is no longer a regular file", src)
	}
	// The size when opened: a file that grows is copied as it was (a watcher copies it
	// again); one that shrinks ends with its last part.
	size := fi.Size()
	if size > MaxFileSize {
		return fmt.Errorf("copy %s: it is %d bytes; copy mode copies files of at most %d bytes", src, size, MaxFileSize)
	}
	buf := make([]byte, min(size, ChunkSize))
	var off int64
	for {
		n, rerr := io.ReadFull(f, buf[:min(size-off, int64(len(buf)))])
		if rerr != nil && !errors.Is(rerr, io.ErrUnexpectedEOF) && !errors.Is(rerr, io.EOF) {
			return fmt.Errorf("copy %s: read: %w", src, rerr)
		}
		total := size
		if rerr != nil {
			total = off + int64(n) // shrank since it was opened
		}
		req.FileSize, req.Offset, req.Data = total, off, buf[:n]
		if err := g.CopyFile(ctx, req); err != nil {
			return wrap(src, err)
		}
		off += int64(n)
		if off >= total {
			return nil
		}
	}
}

func wrap(src string, err error) error {
	if err != nil {
		return fmt.Errorf("copy %s into the guest: %w", src, err)
	}
	return nil
}
