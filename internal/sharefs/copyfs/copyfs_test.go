package copyfs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
)

// fakeGuest applies CopyFile and RemovePath to a host directory standing for the guest's
// root, as the agent does: parts in order, files and links renamed into place (so a
// directory in the way is an error), and it records what it was asked.
type fakeGuest struct {
	root string

	// mu guards the fields below.
	mu      sync.Mutex
	partial map[string][]byte
	parts   map[string][]int // data sizes of each file's parts
	removed []string
}

func newFakeGuest(t *testing.T) *fakeGuest {
	return &fakeGuest{root: t.TempDir(), partial: map[string][]byte{}, parts: map[string][]int{}}
}

func (g *fakeGuest) path(p string) string { return filepath.Join(g.root, p) }

func (g *fakeGuest) CopyFile(_ context.Context, req *agentv1.CopyFileRequest) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	p := g.path(req.GetPath())
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	perm := fs.FileMode(req.GetFileMode() & 0o777)
	switch req.GetFileMode() & unix.S_IFMT {
	case unix.S_IFDIR:
		if err := os.Mkdir(p, perm); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		if fi, err := os.Lstat(p); err != nil || !fi.IsDir() {
			return fmt.Errorf("%s: not a directory", p)
		}
		return os.Chmod(p, perm)
	case unix.S_IFLNK:
		tmp := p + ".tmp"
		if err := os.Symlink(req.GetSymlinkTarget(), tmp); err != nil {
			return err
		}
		return os.Rename(tmp, p)
	}
	if len(req.GetData()) > ChunkSize {
		return fmt.Errorf("part of %d bytes", len(req.GetData()))
	}
	if int64(len(g.partial[p])) != req.GetOffset() {
		return fmt.Errorf("%s: part at %d, have %d bytes", p, req.GetOffset(), len(g.partial[p]))
	}
	g.partial[p] = append(g.partial[p], req.GetData()...)
	g.parts[req.GetPath()] = append(g.parts[req.GetPath()], len(req.GetData()))
	if int64(len(g.partial[p])) < req.GetFileSize() {
		return nil
	}
	data := g.partial[p]
	delete(g.partial, p)
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, data, perm); err != nil {
		return err
	}
	if err := os.Chmod(tmp, perm); err != nil {
		return err
	}
	if req.GetMtimeNs() != 0 {
		mt := time.Unix(0, req.GetMtimeNs())
		if err := os.Chtimes(tmp, mt, mt); err != nil {
			return err
		}
	}
	return os.Rename(tmp, p)
}

func (g *fakeGuest) RemovePath(_ context.Context, p string, recursive bool) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.removed = append(g.removed, p)
	if !recursive {
		return os.Remove(g.path(p))
	}
	return os.RemoveAll(g.path(p))
}

// treeOf describes a tree for comparison: one line per entry with its type, permissions
// and content or link target.
func treeOf(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		line := fmt.Sprintf("%s %v", rel, fi.Mode())
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			line += " -> " + target
		case fi.Mode().IsRegular():
			data, _ := os.ReadFile(p)
			line += fmt.Sprintf(" %d %x", len(data), data[:min(len(data), 16)])
		}
		out = append(out, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func write(t *testing.T, p, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestCopyTree(t *testing.T) {
	src := t.TempDir()
	write(t, filepath.Join(src, "etc/conf"), "a=1\n")
	big := bytes.Repeat([]byte("0123456789abcdef"), (5<<20)/32) // 2.5 MiB: three parts
	if err := os.WriteFile(filepath.Join(src, "big"), big, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "empty"), nil, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("etc/conf", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(src, "private"), 0o700); err != nil {
		t.Fatal(err)
	}
	mt := time.Unix(1_600_000_000, 5)
	if err := os.Chtimes(filepath.Join(src, "etc/conf"), mt, mt); err != nil {
		t.Fatal(err)
	}
	tree, err := Scan(src)
	if err != nil {
		t.Fatal(err)
	}
	if !tree.Dir {
		t.Fatal("Scan of a directory: Dir is false")
	}
	// conf 4 KiB, big 2.5 MiB (page-aligned), empty nothing.
	if want := int64(4096 + len(big)); tree.Bytes != want {
		t.Fatalf("Bytes = %d, want %d", tree.Bytes, want)
	}
	g := newFakeGuest(t)
	dst := GuestRootfs("c1")
	if err := Copy(context.Background(), g, tree, dst); err != nil {
		t.Fatal(err)
	}
	if got, want := treeOf(t, g.path(dst)), treeOf(t, src); !slices.Equal(got, want) {
		t.Fatalf("guest tree:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := g.parts[dst+"/big"]; !slices.Equal(got, []int{1 << 20, 1 << 20, len(big) - 2<<20}) {
		t.Fatalf("parts of big: %v", got)
	}
	if got := g.parts[dst+"/empty"]; !slices.Equal(got, []int{0}) {
		t.Fatalf("parts of empty: %v", got)
	}
	fi, err := os.Stat(g.path(dst + "/etc/conf"))
	if err != nil || !fi.ModTime().Equal(mt) {
		t.Fatalf("mtime of conf: %v, %v; want %v", fi.ModTime(), err, mt)
	}

	// A single file is copied as the file.
	ft, err := Scan(filepath.Join(src, "etc/conf"))
	if err != nil || ft.Dir || len(ft.Entries) != 1 {
		t.Fatalf("Scan of a file: %+v, %v", ft, err)
	}
	if err := Copy(context.Background(), g, ft, GuestVolume(0)); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(g.path(GuestVolume(0))); err != nil || string(data) != "a=1\n" {
		t.Fatalf("copied file: %q, %v", data, err)
	}
}

func TestScanRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		make func(t *testing.T, p string)
		want string
	}{
		{"fifo", func(t *testing.T, p string) {
			if err := unix.Mkfifo(p, 0o600); err != nil {
				t.Fatal(err)
			}
		}, "is a FIFO"},
		{"socket", func(t *testing.T, p string) {
			l, err := net.Listen("unix", p)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
		}, "is a socket"},
		{"too large", func(t *testing.T, p string) {
			f, err := os.Create(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := f.Truncate(MaxFileSize + 1); err != nil {
				t.Fatal(err)
			}
		}, fmt.Sprintf("is %d bytes; copy mode copies files of at most %d bytes", MaxFileSize+1, MaxFileSize)},
		{"device", func(t *testing.T, p string) {
			if err := unix.Mknod(p, unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3))); err != nil {
				t.Skipf("mknod needs privilege: %v", err)
			}
		}, "is a device node"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "sub", "x")
			if err := os.Mkdir(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			tc.make(t, p)
			_, err := Scan(dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p) {
				t.Fatalf("Scan: %v; want an error naming %s and %q", err, p, tc.want)
			}
		})
	}
}

func TestSynced(t *testing.T) {
	const pods = "/var/lib/kubelet/pods/0b6c-11/volumes/"
	for _, tc := range []struct {
		mode SyncMode
		src  string
		dir  bool
		want bool
	}{
		{SyncAll, "/srv/data", true, true},
		{SyncAll, "/srv/data/file", false, false},
		{SyncNone, pods + "kubernetes.io~configmap/cm", true, false},
		{SyncKubernetes, pods + "kubernetes.io~configmap/cm", true, true},
		{SyncKubernetes, pods + "kubernetes.io~secret/token", true, true},
		{SyncKubernetes, pods + "kubernetes.io~downward-api/info", true, true},
		{SyncKubernetes, pods + "kubernetes.io~projected/kube-api-access-x", true, true},
		{SyncKubernetes, "/tmp/kubelet/pods/uid/volumes/kubernetes.io~configmap/cm/", true, true},
		{SyncKubernetes, pods + "kubernetes.io~empty-dir/cache", true, false},
		{SyncKubernetes, pods + "kubernetes.io~configmap/cm/sub", true, false},
		{SyncKubernetes, "/srv/data", true, false},
	} {
		if got := tc.mode.Synced(tc.src, tc.dir); got != tc.want {
			t.Errorf("%s.Synced(%s, dir %v) = %v, want %v", tc.mode, tc.src, tc.dir, got, tc.want)
		}
	}
}

func TestDue(t *testing.T) {
	t0 := time.Unix(1000, 0)
	for _, tc := range []struct {
		last time.Duration
		want time.Duration
	}{
		{0, Debounce},
		{300 * time.Millisecond, 300*time.Millisecond + Debounce},
		{1700 * time.Millisecond, maxDelay},
		{5 * time.Second, maxDelay},
	} {
		if got := due(t0, t0.Add(tc.last)).Sub(t0); got != tc.want {
			t.Errorf("last change at %v: due at %v, want %v", tc.last, got, tc.want)
		}
	}
}

func TestPlan(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "..2026_new/key"), "v2")
	write(t, filepath.Join(dir, "file"), "x")
	write(t, filepath.Join(dir, "sub/f"), "y")
	if err := os.Symlink("..2026_new", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	lstat := func(rel string) (os.FileInfo, error) { return os.Lstat(filepath.Join(dir, rel)) }
	got := plan(map[string]change{
		"..2026_old":     {},            // removed, with what was in it
		"..2026_old/key": {},            // covered by its directory's removal
		"..2026_new":     {tree: true},  // created: copied whole
		"..2026_new/key": {tree: true},  // covered by its directory's copy
		"..data":         {tree: true},  // a link: after the copies
		"..data_tmp":     {},            // renamed away
		"file":           {},            // written
		"file/old":       {},            // was below a directory that is a file now
		"sub":            {},            // changed itself (mode): the directory alone
		"sub/f":          {tree: false}, // written
	}, lstat)
	want := []op{
		{rel: "..2026_new", tree: true},
		{rel: "file"},
		{rel: "sub"},
		{rel: "sub/f"},
		{rel: "..data", link: true},
		{rel: "..2026_old", remove: true},
		{rel: "..data_tmp", remove: true},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("plan:\n%+v\nwant:\n%+v", got, want)
	}
}

// TestWatcher changes a watched directory on the host and waits for the guest copy to
// match after each change: writes, creates, renames, removes, a directory turned into a
// file, and kubelet's ..data swap.
func TestWatcher(t *testing.T) {
	src := t.TempDir()
	write(t, filepath.Join(src, "a"), "1")
	write(t, filepath.Join(src, "d/b"), "2")
	tree, err := Scan(src)
	if err != nil {
		t.Fatal(err)
	}
	g := newFakeGuest(t)
	dst := GuestVolume(1)
	ctx := context.Background()
	syncs := make(chan error, 100)
	w, err := watch(ctx, g, tree.Root, dst, func(err error) { syncs <- err })
	if err != nil {
		t.Fatal(err)
	}
	// A change while the tree is first copied (the watcher paused) is copied on Resume.
	if err := Copy(ctx, g, tree, dst); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(src, "during-copy"), "3")
	w.Resume()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = w.Close()
		}
	})
	// waitSame waits for syncs until the guest matches the host.
	waitSame := func(step string) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case err := <-syncs:
				if err != nil {
					t.Fatalf("%s: sync: %v", step, err)
				}
				if slices.Equal(treeOf(t, g.path(dst)), treeOf(t, src)) {
					return
				}
			case <-deadline:
				t.Fatalf("%s: guest copy differs after 10 s:\n%s\nhost:\n%s", step,
					strings.Join(treeOf(t, g.path(dst)), "\n"), strings.Join(treeOf(t, src), "\n"))
			}
		}
	}
	do := func(step string, f func() error) {
		t.Helper()
		if err := f(); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		waitSame(step)
	}
	waitSame("change while paused")
	do("write", func() error { return os.WriteFile(filepath.Join(src, "a"), []byte("changed"), 0o644) })
	do("create in a new directory", func() error {
		if err := os.MkdirAll(filepath.Join(src, "n/m"), 0o750); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(src, "n/m/f"), []byte("new"), 0o600)
	})
	do("rename a file", func() error { return os.Rename(filepath.Join(src, "a"), filepath.Join(src, "d/a2")) })
	do("rename a directory", func() error { return os.Rename(filepath.Join(src, "n"), filepath.Join(src, "n2")) })
	do("write in the renamed directory", func() error { return os.WriteFile(filepath.Join(src, "n2/m/g"), []byte("g"), 0o644) })
	do("remove a file", func() error { return os.Remove(filepath.Join(src, "d/b")) })
	do("directory becomes a file", func() error {
		if err := os.RemoveAll(filepath.Join(src, "n2")); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(src, "n2"), []byte("file now"), 0o644)
	})
	// kubelet's update: a new timestamped directory, a new ..data link renamed over the
	// old one, the old directory removed.
	do("kubelet layout", func() error {
		write(t, filepath.Join(src, "..2026_1/key"), "v1")
		if err := os.Symlink("..2026_1", filepath.Join(src, "..data")); err != nil {
			return err
		}
		return os.Symlink("..data/key", filepath.Join(src, "key"))
	})
	do("kubelet swap", func() error {
		write(t, filepath.Join(src, "..2026_2/key"), "v2")
		if err := os.Symlink("..2026_2", filepath.Join(src, "..data_tmp")); err != nil {
			return err
		}
		if err := os.Rename(filepath.Join(src, "..data_tmp"), filepath.Join(src, "..data")); err != nil {
			return err
		}
		return os.RemoveAll(filepath.Join(src, "..2026_1"))
	})
	if data, err := os.ReadFile(g.path(dst + "/key")); err != nil || string(data) != "v2" {
		t.Fatalf("key through ..data: %q, %v", data, err)
	}

	stopped = true
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.done:
	default:
		t.Fatal("watcher goroutine still running after Close")
	}
}
