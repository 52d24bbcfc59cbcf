package sandbox

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/vessel-containers/vessel/internal/config"
	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/idrange"
	"github.com/vessel-containers/vessel/internal/sharefs"
	"github.com/vessel-containers/vessel/internal/testutil"
)

// jailPool is the id pool of the jailed sandboxes of these tests: far above any host user.
const jailPool = "2000000000-2000131071"

// newJailedEnv is newEnv with the VMM on unprivileged ids of its own
// (hypervisor.vmm_id_range) reaching the container's files with their host owners
// (vmm_file_ids = "container"), as the shim runs it by default.
func newJailedEnv(t *testing.T) *env {
	t.Helper()
	pool, err := idrange.ParsePool(jailPool)
	if err != nil {
		t.Fatal(err)
	}
	leases, err := os.MkdirTemp("", "vleases")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(leases) })
	return newEnvWith(t, func(c *Config) {
		c.VMMIDs, c.VMMIDLeaseDir = &pool, leases
		c.Effective = config.Default()
		c.Effective.Hypervisor.VMMFileIDs = config.VMMFileIDsContainer
	})
}

// signalWriter collects a stream; waitFor waits until it holds a string.
type signalWriter struct {
	// changed gets a token after each write.
	changed chan struct{}
	// mu guards buf.
	mu  sync.Mutex
	buf bytes.Buffer
}

func newSignalWriter() *signalWriter { return &signalWriter{changed: make(chan struct{}, 1)} }

func (w *signalWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.buf.Write(p)
	w.mu.Unlock()
	select {
	case w.changed <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (w *signalWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// waitFor reports whether the stream came to hold want before ctx ended.
func (w *signalWriter) waitFor(ctx context.Context, want string) bool {
	for !strings.Contains(w.String(), want) {
		select {
		case <-w.changed:
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// TestVolumeSubmountRemovedWhileRunning is what critest's readonly-mount specs do: a tmpfs
// is mounted under a volume's host directory, a container runs with the volume (rbind,
// read-only, the top mount or the whole tree), and while it runs the host lazily unmounts
// the tmpfs and removes its directory, which must succeed as it does with runc. A jailed
// VMM's file server holds the shares in its own mount namespace, so the directory is a
// mount point only there, and the removal detaches the mount there. The container keeps
// running and exits cleanly, and nothing stays mounted in the file server's namespace
// once the container is deleted, nor on the host once the sandbox is.
func TestVolumeSubmountRemovedWhileRunning(t *testing.T) {
	e := newJailedEnv(t)
	srv, ok := e.sb.share.Server()
	if !ok {
		t.Fatal("the jailed sandbox's shares are not attached in its file server's mount namespace")
	}
	for _, ro := range []string{"ro", "rro"} {
		t.Run(ro, func(t *testing.T) {
			vol := t.TempDir()
			sub := filepath.Join(vol, "tmpfs")
			if err := os.Mkdir(sub, 0o755); err != nil {
				t.Fatal(err)
			}
			unmounted := testutil.Mount(t, "tmpfs", sub, "tmpfs", 0, "size=1m")
			if err := os.WriteFile(filepath.Join(sub, "f"), []byte("on-tmpfs\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			id := "vol-" + ro
			c := e.container(id, []string{"sh", "-c", "cat /home/tmpfs/f && read line && echo listing: $(ls -A /home) && touch /home/w 2>/dev/null || echo refused"}, func(s *specs.Spec) {
				// A directory of the image: the rootfs is not idmapped here (no shim), so
				// the VMM could not create one.
				s.Mounts = append(s.Mounts, volume("/home", vol, "rbind", ro))
			})
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			run := startInteractive(ctx, t, c)
			if !run.out.waitFor(ctx, "on-tmpfs") {
				t.Fatalf("the container did not read the tmpfs: %q %q", run.out.String(), run.errb.String())
			}
			if m, _ := sharefs.MountsUnder(vol); len(m) != 1 || m[0] != sub {
				t.Errorf("mounts under the volume on the host: %v, want only the test's tmpfs", m)
			}
			if err := unix.Unmount(sub, unix.MNT_DETACH); err != nil {
				t.Fatal(err)
			}
			unmounted()
			if err := os.Remove(sub); err != nil {
				t.Errorf("remove the tmpfs's directory while the container runs: %v (runc: it is removed)", err)
			}
			code := run.finish(ctx, t, c)
			if got := run.out.String(); code != 0 || got != "on-tmpfs\nlisting:\nrefused\n" {
				t.Errorf("container: exit %d, stdout %q stderr %q; want 0, the tmpfs directory gone and the volume read-only", code, got, run.errb.String())
			}
			if err := e.sb.DeleteContainer(ctx, id); err != nil {
				t.Fatal(err)
			}
			mi, err := os.ReadFile("/proc/" + strconv.Itoa(srv.Pid) + "/mountinfo")
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(mi, []byte("/containers/"+id+"/")) {
				t.Errorf("mounts of %s left in the file server's namespace:\n%s", id, mi)
			}
		})
	}
}

// TestPropagatedMountIdmapped is critest's rslave spec under the jail: a volume shared
// `rslave` from a shared host mount, and after the container started the host binds a
// root-owned mode-0700 directory under its source. With vmm_file_ids = "container" the
// file server (unprivileged) reaches it only idmapped, which the propagation watcher
// does as the mount arrives; the container lists it at once. When the host unmounts it,
// it goes from the container too, and the host can remove its directory.
func TestPropagatedMountIdmapped(t *testing.T) {
	src := t.TempDir()
	testutil.Mount(t, src, src, "", unix.MS_BIND, "")
	if err := unix.Mount("", src, "", unix.MS_SHARED, ""); err != nil {
		t.Fatal(err)
	}
	secret := testutil.ClosedDir(t, "f", "secret\n")
	sub := filepath.Join(src, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	e := newJailedEnv(t)
	c := e.container("prop", []string{"sh", "-c", "echo started && read line && { cat /home/sub/f; echo read; } && read line && echo gone: $(ls -A /home/sub)"}, func(s *specs.Spec) {
		s.Mounts = append(s.Mounts, volume("/home", src, "rbind", "rslave"))
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	run := startInteractive(ctx, t, c)
	if !run.out.waitFor(ctx, "started") {
		t.Fatalf("the container did not start: %q %q", run.out.String(), run.errb.String())
	}
	// Mounted after the container started: only propagation brings it in; the container
	// reads it at once, as critest's exec does.
	unmounted := testutil.Mount(t, secret, sub, "", unix.MS_BIND, "")
	run.next(t)
	if !run.out.waitFor(ctx, "read\n") || !strings.Contains(run.out.String(), "secret") {
		t.Fatalf("the container did not read the propagated mount: %q %q", run.out.String(), run.errb.String())
	}
	if err := unix.Unmount(sub, 0); err != nil {
		t.Errorf("the host's unmount of the propagated mount: %v", err)
	} else {
		unmounted()
	}
	code := run.finish(ctx, t, c)
	want := "started\nsecret\nread\ngone:\n"
	if e.sb.vmcfg.SharedFS == hypervisor.SharedFSVirtioFS {
		// The guest's virtio-fs cache (cache=auto) keeps the directory it listed for a
		// while, as it keeps a ConfigMap's old files (docs/shared-fs.md).
		want = "started\nsecret\nread\ngone:"
	}
	if got := run.out.String(); code != 0 || !strings.HasPrefix(got, want) {
		t.Errorf("container: exit %d, stdout %q stderr %q; want the mount read, then gone (%q)", code, got, run.errb.String(), want)
	}
	if err := os.Remove(sub); err != nil {
		t.Errorf("remove the former mount point: %v", err)
	}
	if err := e.sb.DeleteContainer(ctx, c.ID()); err != nil {
		t.Error(err)
	}
}

// interactive is a started container with its stdio attached: the test writes lines to
// its stdin (next) and waits for its output (out).
type interactive struct {
	stdin *io.PipeWriter
	out   *signalWriter
	errb  strings.Builder
	st    *Streams
}

// startInteractive attaches to c's stdio and starts it; the attachment closes with the test.
func startInteractive(ctx context.Context, t *testing.T, c *Container) *interactive {
	t.Helper()
	stdinR, stdinW := io.Pipe()
	run := &interactive{stdin: stdinW, out: newSignalWriter()}
	run.st = c.Attach(ctx, "", IO{Stdin: stdinR, Stdout: run.out, Stderr: &run.errb})
	t.Cleanup(func() { run.st.Close() })
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return run
}

// next writes a line to the container's stdin, for its `read line`.
func (run *interactive) next(t *testing.T) {
	t.Helper()
	if _, err := run.stdin.Write([]byte("go\n")); err != nil {
		t.Fatal(err)
	}
}

// finish writes the last line, closes stdin, and returns the container's exit code once
// its output has arrived.
func (run *interactive) finish(ctx context.Context, t *testing.T, c *Container) int {
	t.Helper()
	run.next(t)
	run.stdin.Close()
	code, err := c.Wait(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := run.st.Wait(); err != nil {
		t.Fatal(err)
	}
	return code
}
