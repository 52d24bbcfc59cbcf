package sharefs

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vessel-containers/vessel/internal/idrange"
	"github.com/vessel-containers/vessel/internal/testutil"
)

func TestGuestPath(t *testing.T) {
	if got, want := GuestPath("c1/rootfs"), "/run/vessel/shared/containers/c1/rootfs"; got != want {
		t.Errorf("GuestPath: got %s, want %s", got, want)
	}
}

func TestValidName(t *testing.T) {
	for _, name := range []string{"", ".", "..", "a/b", "../x", "a\x00b"} {
		if err := validName("container id", name); err == nil {
			t.Errorf("validName(%q) accepted", name)
		}
	}
	for _, name := range []string{"c1", "mount-0", "rootfs", "..a"} {
		if err := validName("container id", name); err != nil {
			t.Errorf("validName(%q): %v", name, err)
		}
	}
}

func TestUnder(t *testing.T) {
	for _, tc := range []struct {
		p, root string
		want    bool
	}{
		{"/a/b", "/a/b", true},
		{"/a/b/c", "/a/b", true},
		{"/a/bc", "/a/b", false},
		{"/a", "/a/b", false},
		{"/x", "/", true},
	} {
		if got := under(tc.p, tc.root); got != tc.want {
			t.Errorf("under(%q, %q): got %v, want %v", tc.p, tc.root, got, tc.want)
		}
	}
}

func TestNewRefusesRelative(t *testing.T) {
	if _, err := New("relative/dir"); err == nil {
		t.Error("New accepted a relative sandbox dir")
	}
}

// The host-side helpers never follow a symlink below the sandbox directory.
func TestResolutionRefusesSymlinks(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "keep"), []byte("host"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{exportName, treeName} {
		if st, err := os.Lstat(filepath.Join(dir, name)); err != nil || !st.IsDir() || st.Mode().Perm() != 0o711 {
			t.Fatalf("%s: got %v %v, want a 0711 directory", name, st, err)
		}
	}
	// A container directory in the tree replaced by a link to a host directory.
	if err := os.Symlink(outside, filepath.Join(dir, treeName, "c1")); err != nil {
		t.Fatal(err)
	}
	root, err := s.openRoot()
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(root)

	if err := mkdirBeneath(root, treeRel("c1", "rootfs"), 0o755); err == nil {
		t.Error("mkdirBeneath created a directory through a symlink")
	}
	if err := mkdirBeneath(root, treeRel("c1"), 0o700); err == nil {
		t.Error("mkdirBeneath accepted a symlink as an existing directory")
	}
	if fd, err := openBeneath(root, treeRel("c1"), unix.O_PATH, 0); err == nil {
		unix.Close(fd)
		t.Error("openBeneath opened a symlink")
	}
	if fd, err := openBeneath(root, "../"+filepath.Base(outside), unix.O_PATH, 0); err == nil {
		unix.Close(fd)
		t.Error("openBeneath left the sandbox directory")
	}
	if err := removeContainerDir(root, "c1"); err == nil {
		t.Error("removeContainerDir removed through a symlink")
	}
	if _, err := s.openView(root); err == nil {
		t.Error("openView accepted an unpublished (plain) export")
	}
	if got, err := os.ReadFile(filepath.Join(outside, "keep")); err != nil || string(got) != "host" {
		t.Errorf("host directory changed: %q %v", got, err)
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 1 {
		t.Errorf("host directory got new entries: %v", entries)
	}
}

// mountIDs is the set of mount ids on the test's temporary directories (other tests on
// the machine mount elsewhere meanwhile).
func mountIDs(t *testing.T) map[int]string {
	t.Helper()
	infos, err := mountsUnder(filepath.Dir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	ids := map[int]string{}
	for _, i := range infos {
		ids[i.ID] = i.Mountpoint
	}
	return ids
}

// assertNoNewMounts fails for every mount on the test's directories not in before.
func assertNoNewMounts(t *testing.T, before map[int]string) {
	t.Helper()
	for id, mp := range mountIDs(t) {
		if _, ok := before[id]; !ok {
			t.Errorf("mount %d on %s is left", id, mp)
		}
	}
}

// published is a share with its view attached, closed and checked at cleanup.
func published(t *testing.T) *Share {
	t.Helper()
	testutil.RequiresRoot(t)
	before := mountIDs(t)
	dir := t.TempDir()
	s, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Publish(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(context.Background()); err != nil {
			t.Errorf("close: %v", err)
		}
		assertNoNewMounts(t, before)
		if entries, _ := os.ReadDir(dir); len(entries) > 0 {
			t.Errorf("left in the sandbox dir: %v", entries)
		}
	})
	return s
}

// tmpfsIn mounts a tmpfs on dir/name (removed at cleanup) and returns its path.
func tmpfsIn(t *testing.T, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", p, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(p, 0); err != nil {
			t.Errorf("unmount test tmpfs: %v", err)
		}
	})
	return p
}

func writable(p string) error {
	return os.WriteFile(filepath.Join(p, "probe"), []byte("x"), 0o644)
}

func TestBindAndRemove(t *testing.T) {
	s := published(t)
	ctx := context.Background()
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	srcFile := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(srcFile, []byte("file"), 0o644); err != nil {
		t.Fatal(err)
	}
	rel, err := s.Bind(ctx, "c1", "rootfs", src, BindOptions{Recursive: true})
	if err != nil {
		t.Fatal(err)
	}
	view := filepath.Join(s.Dir(), viewName)
	if got, _ := os.ReadFile(filepath.Join(view, rel, "f")); string(got) != "data" {
		t.Errorf("bound dir content: got %q, want data", got)
	}
	relRO, err := s.Bind(ctx, "c1", "mount-0", srcFile, BindOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(view, relRO), []byte("x"), 0o644); err == nil {
		t.Error("wrote through a read-only share")
	}
	if _, err := s.Bind(ctx, "c1", "rootfs", src, BindOptions{}); err == nil {
		t.Error("a second bind onto the same name succeeded")
	}
	if _, err := s.Bind(ctx, "../evil", "rootfs", src, BindOptions{}); err == nil {
		t.Error("bind with an escaping container id succeeded")
	}
	if _, err := s.Bind(ctx, "c1", "gone", "/does/not/exist", BindOptions{}); err == nil {
		t.Error("bind of a missing source succeeded")
	}
	// The guest sees the container directories read-only.
	for _, p := range []string{view, filepath.Join(view, "c1")} {
		if err := writable(p); !errors.Is(err, unix.EROFS) {
			t.Errorf("write in %s: got %v, want EROFS", p, err)
		}
	}
	if err := os.Symlink("/", filepath.Join(view, "c2")); !errors.Is(err, unix.EROFS) {
		t.Errorf("symlink in the view: got %v, want EROFS", err)
	}
	if err := os.Rename(filepath.Join(s.Dir(), viewName), filepath.Join(s.Dir(), "moved")); err == nil {
		t.Error("renamed the view")
	}
	if err := s.RemoveContainer(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if m, _ := MountsUnder(filepath.Join(view, "c1")); len(m) != 0 {
		t.Errorf("mounts left after RemoveContainer: %v", m)
	}
	if _, err := os.Lstat(filepath.Join(s.dir, treeName, "c1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("container dir after RemoveContainer: %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(src, "f")); string(got) != "data" {
		t.Error("removing the share touched the source")
	}
	if err := s.RemoveContainer(ctx, "c1"); err != nil {
		t.Errorf("second RemoveContainer: %v", err)
	}
	if _, err := s.Bind(ctx, "c2", "rootfs", src, BindOptions{}); err != nil {
		t.Fatal(err)
	}
}

// A read-only volume is read-only on the host side in every mount of its tree; a bind
// that is not recursive shares no submount.
func TestReadOnlyModes(t *testing.T) {
	s := published(t)
	ctx := context.Background()
	src := t.TempDir()
	sub := tmpfsIn(t, src, "sub")
	if err := os.WriteFile(filepath.Join(sub, "inside"), []byte("sub"), 0o644); err != nil {
		t.Fatal(err)
	}
	for i, tc := range []struct {
		name                 string
		opts                 BindOptions
		topWritable, subSeen bool
		subWritable          bool
	}{
		{"rbind rw", BindOptions{Recursive: true}, true, true, true},
		{"rbind ro", BindOptions{Recursive: true, ReadOnly: true}, false, true, false},
		{"bind ro", BindOptions{ReadOnly: true}, false, false, false},
		{"bind rw", BindOptions{}, true, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rel, err := s.Bind(ctx, "c", "mount-"+string(rune('0'+i)), src, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(s.Dir(), viewName, rel)
			if err := writable(p); (err == nil) != tc.topWritable {
				t.Errorf("top writable: got err %v, want writable %v", err, tc.topWritable)
			}
			_, err = os.Stat(filepath.Join(p, "sub", "inside"))
			if (err == nil) != tc.subSeen {
				t.Errorf("submount seen: got err %v, want seen %v", err, tc.subSeen)
			}
			if tc.subSeen {
				if err := writable(filepath.Join(p, "sub")); (err == nil) != tc.subWritable {
					t.Errorf("submount writable: got err %v, want writable %v", err, tc.subWritable)
				}
			}
			os.Remove(filepath.Join(src, "probe"))
			os.Remove(filepath.Join(sub, "probe"))
		})
	}
	if err := s.RemoveContainer(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	// The source's own mounts are untouched.
	if _, err := os.Stat(filepath.Join(sub, "inside")); err != nil {
		t.Errorf("source submount after RemoveContainer: %v", err)
	}
}

func TestSetReadOnly(t *testing.T) {
	s := published(t)
	ctx := context.Background()
	src := t.TempDir()
	rel, err := s.Bind(ctx, "c", "rootfs", src, BindOptions{Recursive: true})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(s.Dir(), viewName, rel)
	if err := writable(p); err != nil {
		t.Fatalf("rootfs before SetReadOnly: %v", err)
	}
	if err := s.SetReadOnly(ctx, "c", "rootfs"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p, "other"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Errorf("rootfs after SetReadOnly: got %v, want EROFS", err)
	}
	if err := s.SetReadOnly(ctx, "c", "mount-9"); err == nil {
		t.Error("SetReadOnly of a name that is not shared succeeded")
	}
}

// Publish refuses an export where something already sits at the view's name.
func TestPublishRefusesPlantedView(t *testing.T) {
	testutil.RequiresRoot(t)
	before := mountIDs(t)
	dir := t.TempDir()
	outside := t.TempDir()
	s, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(s.Dir(), viewName)); err != nil {
		t.Fatal(err)
	}
	if err := s.Publish(context.Background()); err == nil {
		t.Error("Publish over a planted symlink succeeded")
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	assertNoNewMounts(t, before)
	if _, err := os.Stat(outside); err != nil {
		t.Errorf("link target: %v", err)
	}
}

// What the guest can change is inside a volume: a directory holding a submount renamed
// and replaced by a symlink to a host directory. Removal unmounts the submount where it
// is now and nothing through the link.
func TestRemoveAfterGuestRenamedSubmountParent(t *testing.T) {
	s := published(t)
	ctx := context.Background()
	src := t.TempDir()
	tmpfsIn(t, src, "a/b")
	outside := t.TempDir()
	if err := os.MkdirAll(filepath.Join(outside, "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	victim := tmpfsIn(t, outside, "b") // a host mount the attacker points at
	if err := os.WriteFile(filepath.Join(victim, "keep"), []byte("host"), 0o644); err != nil {
		t.Fatal(err)
	}
	rel, err := s.Bind(ctx, "c", "mount-0", src, BindOptions{Recursive: true})
	if err != nil {
		t.Fatal(err)
	}
	vol := filepath.Join(s.Dir(), viewName, rel)
	if err := os.Rename(filepath.Join(vol, "a"), filepath.Join(vol, "moved")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(vol, "a")); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveContainer(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if m, _ := MountsUnder(s.dir); len(m) != 1 || m[0] != filepath.Join(s.Dir(), viewName) {
		t.Errorf("mounts under the sandbox after RemoveContainer: %v, want only the view", m)
	}
	if got, err := os.ReadFile(filepath.Join(victim, "keep")); err != nil || string(got) != "host" {
		t.Errorf("host mount the link pointed at: %q %v", got, err)
	}
	if m, _ := MountsUnder(victim); len(m) != 1 {
		t.Errorf("host mount the link pointed at: mounts %v, want it still mounted once", m)
	}
	// Put the source back as it was for the cleanup's unmount.
	if err := os.Remove(filepath.Join(src, "a")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(src, "moved"), filepath.Join(src, "a")); err != nil {
		t.Fatal(err)
	}
}

// Close removes what the guest left in the export root without following its links.
func TestCloseRemovesGuestLeftovers(t *testing.T) {
	s := published(t)
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "keep"), []byte("host"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(s.Dir(), "c1")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(s.Dir(), "junk", "deep"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(outside, "keep")); err != nil || string(got) != "host" {
		t.Errorf("link target after Close: %q %v", got, err)
	}
	if _, err := os.Stat(s.Dir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("export after Close: %v", err)
	}
}

func TestMountsUnderDeepestFirst(t *testing.T) {
	s := published(t)
	ctx := context.Background()
	src := t.TempDir()
	tmpfsIn(t, src, "x/y")
	if _, err := s.Bind(ctx, "c", "rootfs", src, BindOptions{Recursive: true}); err != nil {
		t.Fatal(err)
	}
	m, err := MountsUnder(s.dir)
	if err != nil {
		t.Fatal(err)
	}
	view := filepath.Join(s.Dir(), viewName)
	want := []string{filepath.Join(view, "c", "rootfs", "x", "y"), filepath.Join(view, "c", "rootfs"), view}
	if !slices.Equal(m, want) {
		t.Errorf("MountsUnder: got %v, want %v", m, want)
	}
	for _, p := range m {
		if !strings.HasPrefix(p, s.dir) {
			t.Errorf("mount %s outside the sandbox dir", p)
		}
	}
}

// TestUnmountSparesChildren: children started with a parent-death signal (QEMU is) survive
// any number of shares and unshares. Linux sends that signal when the forking *thread*
// exits, so the unmount path must never end a thread.
func TestUnmountSparesChildren(t *testing.T) {
	s := published(t)
	ctx := context.Background()
	var children []*exec.Cmd
	for range 4 {
		// Forked from whatever threads the scheduler uses, as Start forks QEMU.
		done := make(chan *exec.Cmd)
		go func() {
			cmd := exec.Command("sleep", "60")
			cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
			if err := cmd.Start(); err != nil {
				t.Error(err)
				cmd = nil
			}
			done <- cmd
		}()
		if cmd := <-done; cmd != nil {
			children = append(children, cmd)
		}
	}
	t.Cleanup(func() {
		for _, c := range children {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	})
	src := t.TempDir()
	for i := range 40 {
		if _, err := s.Bind(ctx, "c", "rootfs", src, BindOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := s.RemoveContainer(ctx, "c"); err != nil {
			t.Fatalf("remove %d: %v", i, err)
		}
	}
	for _, c := range children {
		// A killed child is a zombie until Wait: its state in /proc tells.
		stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(c.Process.Pid), "stat"))
		if err != nil || strings.Contains(string(stat), ") Z ") {
			t.Errorf("child %d was killed while shares were removed", c.Process.Pid)
		}
	}
}

// TestBindDeviceNodeReadOnly: a device node bound into a container is shared read-only on
// the host side even when the container asked for it writable, so the file server (the
// guest's root) cannot chown or chmod the host's node; the node itself stays as it was.
func TestBindDeviceNodeReadOnly(t *testing.T) {
	s := published(t)
	ctx := context.Background()
	src := filepath.Join(t.TempDir(), "null")
	if err := unix.Mknod(src, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(src, 0o666); err != nil { // past the umask
		t.Fatal(err)
	}
	rel, err := s.Bind(ctx, "c", "mount-dev", src, BindOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(s.Dir(), viewName, rel)
	if err := os.Lchown(p, 65534, 65534); !errors.Is(err, unix.EROFS) {
		t.Errorf("chown of the shared device node: %v, want EROFS", err)
	}
	if err := os.Chmod(p, 0o600); !errors.Is(err, unix.EROFS) {
		t.Errorf("chmod of the shared device node: %v, want EROFS", err)
	}
	var st unix.Stat_t
	if err := unix.Stat(src, &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != 0 || st.Mode&0o777 != 0o666 {
		t.Errorf("host node after the attempts: uid %d mode %o, want 0 and 666", st.Uid, st.Mode&0o777)
	}
	// Writing the device through the share still works (it is the device, not the file).
	if err := os.WriteFile(p, []byte("x"), 0); err != nil {
		t.Errorf("write to the shared device node: %v", err)
	}
	if err := s.RemoveContainer(ctx, "c"); err != nil {
		t.Fatal(err)
	}
}

// TestBindIDMapped shares a volume idmapped into a user namespace (BindOptions.IDMap):
// its files appear with their owners shifted into the namespace's host ids, the clone is
// nosuid and nodev, and a device node is shared without the idmap (its file system
// takes none), read-only as always.
func TestBindIDMapped(t *testing.T) {
	s := published(t)
	ctx := context.Background()
	ids := idrange.Range{Start: 2000000000, Size: idrange.Size}
	userns, err := ids.UserNS()
	if err != nil {
		t.Fatal(err)
	}
	defer userns.Close()
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(src, "f"), 0, 42); err != nil {
		t.Fatal(err)
	}
	rel, err := s.Bind(ctx, "c", "mount-0", src, BindOptions{Recursive: true, IDMap: userns})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(s.Dir(), viewName, rel)
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(p, "f"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != ids.HostID(0) || st.Gid != ids.HostID(42) {
		t.Errorf("shared file owner %d:%d, want %d:%d", st.Uid, st.Gid, ids.HostID(0), ids.HostID(42))
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(p, &fs); err != nil {
		t.Fatal(err)
	}
	if fs.Flags&unix.ST_NOSUID == 0 || fs.Flags&unix.ST_NODEV == 0 || fs.Flags&unix.ST_RDONLY != 0 {
		t.Errorf("idmapped share flags %#x, want nosuid, nodev and writable", fs.Flags)
	}
	rel, err = s.Bind(ctx, "c", "mount-1", "/dev/null", BindOptions{IDMap: userns})
	if err != nil {
		t.Fatalf("share a device node with an idmap asked: %v", err)
	}
	if err := os.Chmod(filepath.Join(s.Dir(), viewName, rel), 0o600); !errors.Is(err, unix.EROFS) {
		t.Errorf("chmod of the shared device node: %v, want EROFS", err)
	}
	if err := s.RemoveContainer(ctx, "c"); err != nil {
		t.Fatal(err)
	}
}
