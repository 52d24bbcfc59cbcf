//go:build linux

package agent

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
)

func TestCopyFileChunks(t *testing.T) {
	root := t.TempDir()
	w := newFileWriter(root)
	path := root + "/sandbox/etc/hosts"
	content := bytes.Repeat([]byte("0123456789"), 250) // 2500 bytes in 3 parts
	parts := [][2]int{{0, 1000}, {1000, 2000}, {2000, 2500}}
	for i, p := range parts {
		err := w.copy(&agentv1.CopyFileRequest{
			Path: path, FileSize: int64(len(content)), FileMode: unix.S_IFREG | 0o640, DirMode: 0o750,
			Uid: -1, Gid: -1, Offset: int64(p[0]), Data: content[p[0]:p[1]],
		})
		if err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		_, statErr := os.Stat(path)
		if last := i == len(parts)-1; last != (statErr == nil) {
			t.Fatalf("after part %d the file exists=%v, want only after the last part", i, statErr == nil)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("content %d bytes, %v", len(got), err)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode = %v", fi.Mode())
	}
	di, _ := os.Stat(filepath.Dir(path))
	if di.Mode().Perm() != 0o750 {
		t.Fatalf("dir mode = %v", di.Mode())
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(path), tempName(filepath.Base(path)))); !os.IsNotExist(err) {
		t.Fatalf("temporary file left behind: %v", err)
	}
}

func TestCopyFileEmptyAndOwner(t *testing.T) {
	root := t.TempDir()
	w := newFileWriter(root)
	uid, gid := os.Getuid(), os.Getgid()
	if err := w.copy(&agentv1.CopyFileRequest{Path: root + "/empty", FileMode: 0o4755, Uid: int32(uid), Gid: int32(gid)}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(root + "/empty")
	if err != nil || fi.Size() != 0 || fi.Mode()&os.ModeSetuid == 0 || fi.Mode().Perm() != 0o755 {
		t.Fatalf("empty file: %v %v", fi.Mode(), err)
	}
}

func TestCopyFileDirAndSymlink(t *testing.T) {
	root := t.TempDir()
	w := newFileWriter(root)
	if err := w.copy(&agentv1.CopyFileRequest{Path: root + "/vol/dir", FileMode: unix.S_IFDIR | 0o711, Uid: -1, Gid: -1}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(root + "/vol/dir"); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o711 {
		t.Fatalf("dir: %v %v", fi, err)
	}
	link := root + "/vol/..data"
	for _, target := range []string{"2024_01", "2024_02"} { // replaced, like Kubernetes volume updates
		if err := w.copy(&agentv1.CopyFileRequest{Path: link, FileMode: unix.S_IFLNK | 0o777, SymlinkTarget: target, Uid: -1, Gid: -1}); err != nil {
			t.Fatal(err)
		}
		if got, err := os.Readlink(link); err != nil || got != target {
			t.Fatalf("link = %q, %v; want %q", got, err, target)
		}
	}
	if err := w.copy(&agentv1.CopyFileRequest{Path: root + "/vol/l2", FileMode: unix.S_IFLNK, Uid: -1, Gid: -1}); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("symlink without target: %v", err)
	}
}

// TestCopyFileConfinement plants what a container with write access to the shared tree
// would: symlinks to a directory outside the root in a parent component and in the last
// component (for a file and for a directory), and a hard link at the temporary name.
func TestCopyFileConfinement(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	w := newFileWriter(root)
	for _, p := range []string{"/etc/passwd", "relative/file", root + "/../x", root, ""} {
		err := w.copy(&agentv1.CopyFileRequest{Path: p, FileSize: 1, Data: []byte("x"), Uid: -1, Gid: -1})
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("path %q: err = %v, want invalid argument", p, err)
		}
	}
	if err := os.Symlink(outside, root+"/evil"); err != nil {
		t.Fatal(err)
	}
	// A symlink in a parent directory is refused, for every kind of entry.
	for _, req := range []*agentv1.CopyFileRequest{
		{Path: root + "/evil/f", FileSize: 1, Data: []byte("x")},
		{Path: root + "/evil/sub/f", FileSize: 1, Data: []byte("x")},
		{Path: root + "/evil/d", FileMode: unix.S_IFDIR | 0o777},
		{Path: root + "/evil/l", FileMode: unix.S_IFLNK, SymlinkTarget: "/"},
	} {
		req.Uid, req.Gid = -1, -1
		err := w.copy(req)
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "is a symlink") {
			t.Errorf("copy %s: err = %v, want a refused symlink", req.GetPath(), err)
		}
	}
	// The last component is not followed: a symlink there is replaced by the file...
	if err := os.Symlink(outside+"/target", root+"/last"); err != nil {
		t.Fatal(err)
	}
	if err := w.copy(&agentv1.CopyFileRequest{Path: root + "/last", FileSize: 1, Data: []byte("x"), Uid: -1, Gid: -1}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(root + "/last"); err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("last: %v %v, want the copied regular file", fi, err)
	}
	// ...and a directory request on a symlink to a directory is refused, and the
	// directory it points to keeps its mode.
	if err := os.Symlink(outside, root+"/lastdir"); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(outside)
	err := w.copy(&agentv1.CopyFileRequest{Path: root + "/lastdir", FileMode: unix.S_IFDIR | 0o777, Uid: -1, Gid: -1})
	if !errdefs.IsInvalidArgument(err) {
		t.Fatalf("directory over a symlink: err = %v, want invalid argument", err)
	}
	if after, _ := os.Stat(outside); after.Mode() != before.Mode() {
		t.Fatalf("outside directory mode changed from %v to %v", before.Mode(), after.Mode())
	}
	// A hard link planted at the temporary name is not truncated or written.
	victim := filepath.Join(root, "victim")
	if err := os.WriteFile(victim, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(victim, filepath.Join(root, tempName("hl"))); err != nil {
		t.Fatal(err)
	}
	if err := w.copy(&agentv1.CopyFileRequest{Path: root + "/hl", FileSize: 2, Data: []byte("x"), Uid: -1, Gid: -1}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(victim); string(got) != "keep" {
		t.Fatalf("hard-linked file now holds %q", got)
	}
	entries, _ := os.ReadDir(outside)
	if len(entries) != 0 {
		t.Fatalf("copies escaped the root: %v", entries)
	}
}

func TestCopyFileSizeLimit(t *testing.T) {
	root := t.TempDir()
	w := newFileWriter(root)
	err := w.copy(&agentv1.CopyFileRequest{Path: root + "/big", FileSize: maxCopyFileSize + 1, Data: []byte("x"), Uid: -1, Gid: -1})
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "over the limit") {
		t.Fatalf("err = %v, want file_size over the limit", err)
	}
	if err := w.copy(&agentv1.CopyFileRequest{Path: root + "/ok", FileSize: maxCopyFileSize, Data: []byte("x"), Uid: -1, Gid: -1}); err != nil {
		t.Fatalf("file_size at the limit: %v", err)
	}
}

func TestCopyFileBadParts(t *testing.T) {
	root := t.TempDir()
	w := newFileWriter(root)
	p := root + "/f"
	for _, tc := range []struct {
		name string
		req  *agentv1.CopyFileRequest
	}{
		{"too big", &agentv1.CopyFileRequest{Path: p, FileSize: 2 << 20, Data: make([]byte, maxCopyChunk+1)}},
		{"past size", &agentv1.CopyFileRequest{Path: p, FileSize: 2, Data: []byte("xyz")}},
		{"no first part", &agentv1.CopyFileRequest{Path: p, FileSize: 10, Offset: 5, Data: []byte("x")}},
		{"negative", &agentv1.CopyFileRequest{Path: p, FileSize: -1}},
		{"device", &agentv1.CopyFileRequest{Path: p, FileMode: unix.S_IFCHR | 0o600}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.Uid, tc.req.Gid = -1, -1
			if err := w.copy(tc.req); !errdefs.IsInvalidArgument(err) {
				t.Fatalf("err = %v, want invalid argument", err)
			}
		})
	}
	// A gap between parts is refused.
	if err := w.copy(&agentv1.CopyFileRequest{Path: p, FileSize: 10, Data: []byte("abc"), Uid: -1, Gid: -1}); err != nil {
		t.Fatal(err)
	}
	if err := w.copy(&agentv1.CopyFileRequest{Path: p, FileSize: 10, Offset: 5, Data: []byte("fgh"), Uid: -1, Gid: -1}); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("gap: err = %v", err)
	}
}

func TestCopyFileMtimeAndLinkSwap(t *testing.T) {
	root := t.TempDir()
	w := newFileWriter(root)
	const mtime = int64(1_600_000_000_123_456_789)
	for _, req := range []*agentv1.CopyFileRequest{
		{Path: root + "/v/d", FileMode: unix.S_IFDIR | 0o755, Uid: -1, Gid: -1, MtimeNs: mtime},
		{Path: root + "/v/f", FileMode: unix.S_IFREG | 0o644, FileSize: 1, Data: []byte("x"), Uid: -1, Gid: -1, MtimeNs: mtime},
		{Path: root + "/v/l", FileMode: unix.S_IFLNK | 0o777, SymlinkTarget: "d", Uid: -1, Gid: -1, MtimeNs: mtime},
	} {
		if err := w.copy(req); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Lstat(req.Path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.ModTime().UnixNano(); got != mtime {
			t.Fatalf("%s: mtime %d, want %d", req.Path, got, mtime)
		}
	}
	// A link copied over a link replaces it; no temporary name is left.
	if err := w.copy(&agentv1.CopyFileRequest{Path: root + "/v/l", FileMode: unix.S_IFLNK | 0o777, SymlinkTarget: "f", Uid: -1, Gid: -1}); err != nil {
		t.Fatal(err)
	}
	if got, err := os.Readlink(root + "/v/l"); err != nil || got != "f" {
		t.Fatalf("link = %q, %v; want f", got, err)
	}
	if _, err := os.Lstat(root + "/v/" + tempName("l")); !os.IsNotExist(err) {
		t.Fatalf("temporary link left behind: %v", err)
	}
}

func TestRemovePath(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "keep"), []byte("k"), 0o644); err != nil {
		t.Fatal(err)
	}
	w := newFileWriter(root)
	for _, p := range []string{"v/d/e", "v/d/f"} {
		if err := os.MkdirAll(filepath.Join(root, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "v/d/e/file"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Links into another directory: removed as links, never followed.
	if err := os.Symlink(outside, filepath.Join(root, "v/d/out")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "v/link")); err != nil {
		t.Fatal(err)
	}
	if err := w.remove(root+"/v/d", false); !errors.Is(err, unix.ENOTEMPTY) {
		t.Fatalf("non-recursive remove of a full directory: %v, want ENOTEMPTY", err)
	}
	if err := w.remove(root+"/v/link/keep", false); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("remove through a symlink: %v, want invalid argument", err)
	}
	if err := w.remove(root+"/v/d", true); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(root, "v/d")); !os.IsNotExist(err) {
		t.Fatalf("v/d still there: %v", err)
	}
	if err := w.remove(root+"/v/link", false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(outside, "keep")); err != nil {
		t.Fatalf("file behind a link was touched: %v", err)
	}
	for _, p := range []string{root + "/v/missing", root + "/nodir/missing"} {
		if err := w.remove(p, true); err != nil {
			t.Fatalf("remove %s (not there): %v", p, err)
		}
	}
	for _, p := range []string{root, root + "/../x", "v", "/etc/passwd"} {
		if err := w.remove(p, true); !errdefs.IsInvalidArgument(err) {
			t.Fatalf("remove %q: %v, want invalid argument", p, err)
		}
	}
}
