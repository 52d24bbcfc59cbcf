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
	"github.com/vessel-containers/vessel/internal/idrange"
	"github.com/vessel-containers/vessel/internal/sharefs"
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

// signalWriter collects a stream and closes seen once it holds want.
type signalWriter struct {
	want string
	seen chan struct{}
	once sync.Once
	// mu guards buf.
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *signalWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if strings.Contains(w.buf.String(), w.want) {
		w.once.Do(func() { close(w.seen) })
	}
	return len(p), nil
}

func (w *signalWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
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
			if err := unix.Mount("tmpfs", sub, "tmpfs", 0, "size=1m"); err != nil {
				t.Fatal(err)
			}
			mounted := true
			t.Cleanup(func() {
				if mounted {
					_ = unix.Unmount(sub, unix.MNT_DETACH)
				}
			})
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
			stdinR, stdinW := io.Pipe()
			out := &signalWriter{want: "on-tmpfs", seen: make(chan struct{})}
			var errb strings.Builder
			st := c.Attach(ctx, "", IO{Stdin: stdinR, Stdout: out, Stderr: &errb})
			defer st.Close()
			if err := c.Start(ctx); err != nil {
				t.Fatal(err)
			}
			select {
			case <-out.seen:
			case <-ctx.Done():
				t.Fatalf("the container did not read the tmpfs: %q %q", out.String(), errb.String())
			}
			if m, _ := sharefs.MountsUnder(vol); len(m) != 1 || m[0] != sub {
				t.Errorf("mounts under the volume on the host: %v, want only the test's tmpfs", m)
			}
			if err := unix.Unmount(sub, unix.MNT_DETACH); err != nil {
				t.Fatal(err)
			}
			mounted = false
			if err := os.Remove(sub); err != nil {
				t.Errorf("remove the tmpfs's directory while the container runs: %v (runc: it is removed)", err)
			}
			if _, err := stdinW.Write([]byte("go\n")); err != nil {
				t.Fatal(err)
			}
			stdinW.Close()
			code, err := c.Wait(ctx, "")
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Wait(); err != nil {
				t.Fatal(err)
			}
			if got := out.String(); code != 0 || got != "on-tmpfs\nlisting:\nrefused\n" {
				t.Errorf("container: exit %d, stdout %q stderr %q; want 0, the tmpfs directory gone and the volume read-only", code, got, errb.String())
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
