package sharefs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/vessel-containers/vessel/internal/idrange"
	"github.com/vessel-containers/vessel/internal/jail"
	"github.com/vessel-containers/vessel/internal/procid"
	"github.com/vessel-containers/vessel/internal/testutil"
)

// fileServer starts a process in a user and mount namespace of its own, as a jailed file
// server runs (its copy of the host's mounts, the published view included, holds them as
// slaves), and returns it and its root as seen from the host. It is killed and reaped at
// cleanup.
func fileServer(t *testing.T) (procid.ID, string) {
	t.Helper()
	ids := idrange.Range{Start: 2000000000, Size: idrange.Size}
	cmd := exec.Command("sleep", "1000")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		UidMappings: ids.Mappings(),
		GidMappings: ids.Mappings(),
		Pdeathsig:   syscall.SIGKILL,
	}
	release, err := jail.StartPinned(cmd) // inServer's threads end: Pdeathsig must not fire
	if err != nil {
		t.Fatalf("start a process in namespaces of its own: %v", err)
	}
	t.Cleanup(func() {
		if err := cmd.Process.Kill(); err != nil {
			t.Errorf("kill the file server: %v", err)
		}
		_ = cmd.Wait()
		release()
	})
	srv, err := procid.Of(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	return srv, "/proc/" + strconv.Itoa(srv.Pid) + "/root"
}

// Shared trees attached in a file server's mount namespace are there only: a directory of
// the source that is a mount point (a tmpfs, cloned with the tree) can be removed on the
// host, which detaches the server's mount as it would a container's; SetReadOnly and
// RemoveContainer act in the server's namespace.
func TestAttachInServer(t *testing.T) {
	s := published(t)
	ctx := context.Background()
	srv, srvRoot := fileServer(t)
	s.AttachIn(srv)

	src := t.TempDir()
	sub := filepath.Join(src, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	unmounted := testutil.Mount(t, "tmpfs", sub, "tmpfs", 0, "size=1m")
	if err := os.WriteFile(filepath.Join(sub, "f"), []byte("on tmpfs"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "g"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	rel, err := s.Bind(ctx, "c1", "mount-0", src, BindOptions{Recursive: true})
	if err != nil {
		t.Fatal(err)
	}
	view := filepath.Join(s.Dir(), viewName)
	inServer := filepath.Join(srvRoot, view, rel)
	if got, err := os.ReadFile(filepath.Join(inServer, "sub", "f")); err != nil || string(got) != "on tmpfs" {
		t.Errorf("the submount in the file server's namespace: got %q, %v; want %q", got, err, "on tmpfs")
	}
	if m, _ := MountsUnder(filepath.Join(view, "c1")); len(m) != 0 {
		t.Errorf("mounts in the host's namespace: %v, want none (the server's only)", m)
	}

	// What critest's readonly-mount specs do at their end, while the container runs.
	if err := unix.Unmount(sub, unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	unmounted()
	if err := os.Remove(sub); err != nil {
		t.Fatalf("remove the source's former mount point: %v (want it removed, as with runc)", err)
	}
	if _, err := os.Lstat(filepath.Join(inServer, "sub")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the removed submount in the file server's namespace: %v, want it gone", err)
	}
	if got, err := os.ReadFile(filepath.Join(inServer, "g")); err != nil || string(got) != "data" {
		t.Errorf("the share after the removal: got %q, %v; want %q", got, err, "data")
	}

	if err := s.SetReadOnly(ctx, "c1", "mount-0"); err != nil {
		t.Fatal(err)
	}
	if err := writable(inServer); !errors.Is(err, unix.EROFS) {
		t.Errorf("write in the share after SetReadOnly: %v, want EROFS", err)
	}
	if err := s.RevokeWritesIn(ctx, srv.Pid, "c1"); err != nil {
		t.Errorf("RevokeWritesIn: %v", err)
	}
	if err := s.RemoveContainer(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(srvRoot, view, "c1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the container's directory in the file server's view after RemoveContainer: %v", err)
	}
	if mi, err := os.ReadFile("/proc/" + strconv.Itoa(srv.Pid) + "/mountinfo"); err != nil {
		t.Fatal(err)
	} else if bytes.Contains(mi, []byte(view+"/c1")) {
		t.Errorf("mounts left in the file server's namespace:\n%s", mi)
	}
	if _, err := os.Lstat(filepath.Join(src, "g")); err != nil {
		t.Errorf("removing the share touched the source: %v", err)
	}
}

// A server whose namespace has no view is refused, and nothing is left behind.
func TestAttachInServerWithoutView(t *testing.T) {
	srv, _ := fileServer(t) // started before the view is published: no copy of it
	s := published(t)
	s.AttachIn(srv)
	if _, err := s.Bind(context.Background(), "c1", "mount-0", t.TempDir(), BindOptions{}); err == nil {
		t.Fatal("bind in a file server without the view succeeded")
	}
	if _, err := os.Lstat(filepath.Join(s.dir, treeName, "c1", "mount-0")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("mount point left after the failed bind: %v", err)
	}
}

// serverMounts is the file server's mount points at or below dir (a host path, as the
// server's root is the host's), with their options.
func serverMounts(t *testing.T, srv procid.ID, dir string) map[string]string {
	t.Helper()
	f, err := os.Open("/proc/" + strconv.Itoa(srv.Pid) + "/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	infos, err := mountinfo.GetMountsFromReader(f, func(i *mountinfo.Info) (bool, bool) { return !under(i.Mountpoint, dir), false })
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, i := range infos {
		out[i.Mountpoint] += i.Options + ";"
	}
	return out
}

// waitFor polls cond every 20 ms for up to 10 s (the watcher runs on its own goroutine).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A mount the host makes under the source of an idmapped slave share after it was shared
// reaches the file server idmapped (the watcher covers the propagated copy), and goes
// when the host unmounts it.
func TestWatchPropagationIdmaps(t *testing.T) {
	s := published(t)
	ctx := context.Background()
	srv, srvRoot := fileServer(t)
	s.AttachIn(srv)
	stop, err := s.WatchPropagation(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop) // before the share's Close (cleanups run last first)

	src := t.TempDir()
	if err := unix.Mount(src, src, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(src, unix.MNT_DETACH) })
	if err := unix.Mount("", src, "", unix.MS_SHARED, ""); err != nil {
		t.Fatal(err)
	}
	ids := idrange.Range{Start: 2000000000, Size: idrange.Size}
	userns, err := ids.UserNS()
	if err != nil {
		t.Fatal(err)
	}
	defer userns.Close()
	rel, err := s.Bind(ctx, "c1", "mount-0", src, BindOptions{Recursive: true, Slave: true, IDMap: userns})
	if err != nil {
		t.Fatal(err)
	}
	secret := testutil.ClosedDir(t, "f", "secret")
	sub := filepath.Join(src, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	unmounted := testutil.Mount(t, secret, sub, "", unix.MS_BIND, "")
	inServer := filepath.Join(srvRoot, s.Dir(), viewName, rel, "sub", "f")
	waitFor(t, "the propagated mount idmapped in the file server's namespace", func() bool {
		var st unix.Stat_t
		return unix.Stat(inServer, &st) == nil && st.Uid == ids.HostID(0)
	})
	if got, err := os.ReadFile(inServer); err != nil || string(got) != "secret" {
		t.Errorf("the propagated mount's file: %q, %v", got, err)
	}
	mp := filepath.Join(s.Dir(), viewName, rel, "sub")
	if opts := serverMounts(t, srv, mp)[mp]; !strings.Contains(opts, "idmapped") {
		t.Errorf("mounts on %s in the file server's namespace: %q, want an idmapped one", mp, opts)
	}

	// A pass of the watcher that walks through the propagated copy holds it for a moment,
	// and the host's unmount of a mount whose copy is held fails with EBUSY.
	waitFor(t, "the host's unmount", func() bool {
		err := unix.Unmount(sub, 0)
		if err != nil && !errors.Is(err, unix.EBUSY) {
			t.Fatal(err)
		}
		return err == nil
	})
	unmounted()
	waitFor(t, "the idmapped clone gone after the host's unmount", func() bool {
		_, ok := serverMounts(t, srv, mp)[mp]
		return !ok
	})
	if err := os.Remove(sub); err != nil {
		t.Errorf("remove the former mount point: %v", err)
	}
	if err := s.RemoveContainer(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
}

// TestMainThreadStaysInHostNamespace enters a file server's mount namespace over and over
// (each Bind and RemoveContainer does) and checks that the process's main thread, which
// /proc/self names, is never left there: a goroutine that enters never unlocks its thread,
// and the Go runtime keeps a main thread it would otherwise end with its goroutine.
func TestMainThreadStaysInHostNamespace(t *testing.T) {
	s := published(t)
	ctx := context.Background()
	srv, _ := fileServer(t)
	s.AttachIn(srv)
	home, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	for i := range 40 {
		id := fmt.Sprintf("c%d", i)
		if _, err := s.Bind(ctx, id, "mount-0", src, BindOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := s.RemoveContainer(ctx, id); err != nil {
			t.Fatal(err)
		}
		if now, err := os.Readlink("/proc/self/ns/mnt"); err != nil || now != home {
			t.Fatalf("after %d entries into the file server's namespace the main thread is in %s (%v), want %s", i+1, now, err, home)
		}
	}
}
