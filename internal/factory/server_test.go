package factory

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/ttrpc"

	factoryv1 "github.com/vessel-containers/vessel/api/factory/v1"
	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/testutil"
)

// TestServerLifecycle serves a cache whose VMs cannot boot (no such driver) over ttrpc:
// the API answers, a sandbox gets no VM, and Serve stops its goroutines and removes its
// socket and directory when its context ends.
func TestServerLifecycle(t *testing.T) {
	before := runtime.NumGoroutine()
	dir := t.TempDir()
	endpoint := filepath.Join(dir, "cache.sock")
	f := New(Config{Driver: "no-such-driver", CacheEndpoint: endpoint, Base: hypervisor.Config{VCPUs: 1, MemoryMiB: 128}})
	srv, err := f.NewServer(1)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan struct{}), make(chan error, 1)
	go func() { done <- srv.Serve(ctx, func() { close(ready) }) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("serve: %v", err)
	}

	if st, err := os.Stat(endpoint); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("socket: %v, mode %v", err, st.Mode())
	}
	// A second server on the same endpoint is refused.
	if err := (&Server{f: f, target: 1}).Serve(ctx, nil); !errdefs.IsAlreadyExists(err) {
		t.Errorf("second server: %v", err)
	}
	eventually(t, "a failed boot", func() bool {
		st, err := CacheStatus(context.Background(), endpoint)
		return err == nil && st.GetBootFailures() >= 1
	})
	st, err := CacheStatus(context.Background(), endpoint)
	if err != nil || st.GetPid() != int32(os.Getpid()) || st.GetTarget() != 1 || !strings.Contains(st.GetLastError(), "no-such-driver") {
		t.Errorf("status: %+v, %v", st, err)
	}
	want := hypervisor.Config{ID: "sb", StateDir: dir, VCPUs: 1, MemoryMiB: 128}
	if _, err := f.fromCache(context.Background(), KeyOf("no-such-driver", f.cfg.Base, nil), want); !errdefs.IsNotFound(err) {
		t.Errorf("vm from an empty cache: got %v, want NotFound", err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
	for _, p := range []string{endpoint, CacheDir(endpoint)} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after serve: %v", p, err)
		}
	}
	if _, err := CacheStatus(context.Background(), endpoint); !errdefs.IsNotFound(err) {
		t.Errorf("status of a stopped server: %v", err)
	}
	eventually(t, "goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
}

// dialCacheEnv names the endpoint TestHelperDialCache dials; set only for its subprocess.
const dialCacheEnv = "VESSEL_TEST_DIAL_CACHE"

// TestHelperDialCache is not a test: run by TestServerRefusesOtherUID as another uid, it
// asks the cache at $VESSEL_TEST_DIAL_CACHE for its status and prints the outcome.
func TestHelperDialCache(t *testing.T) {
	endpoint := os.Getenv(dialCacheEnv)
	if endpoint == "" {
		t.Skip("helper process only")
	}
	// Dial without the client's own check of the server's uid: the server's check is
	// under test.
	conn, err := net.Dial("unix", endpoint)
	if err != nil {
		fmt.Printf("dial: %v\n", err)
		return
	}
	tc := ttrpc.NewClient(conn)
	defer tc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := factoryv1.NewCacheClient(tc).Status(ctx, &factoryv1.StatusRequest{}); err != nil {
		fmt.Printf("status: %v\n", err)
		return
	}
	fmt.Println("status: ok")
}

// dialAs runs TestHelperDialCache against endpoint as uid and gid and returns its output.
// The test binary is copied where that uid can execute it.
func dialAs(t *testing.T, endpoint string, uid, gid uint32) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "vessel-dialas-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "factory.test")
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^TestHelperDialCache$", "-test.count=1")
	cmd.Env = []string{dialCacheEnv + "=" + endpoint}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper as uid %d: %v\n%s", uid, err, out)
	}
	return string(out)
}

// TestServerRefusesOtherUID connects to a cache server from another uid (nobody): the
// socket's mode refuses the connection, and where the mode would let it through (here
// widened on purpose) the server's peer-credential check refuses it. The server's own uid
// is served.
func TestServerRefusesOtherUID(t *testing.T) {
	testutil.RequiresRoot(t)
	dir, err := os.MkdirTemp("", "vessel-cache-uid-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	endpoint := filepath.Join(dir, "cache.sock")
	f := New(Config{Driver: "no-such-driver", CacheEndpoint: endpoint, Base: hypervisor.Config{VCPUs: 1, MemoryMiB: 128}})
	srv, err := f.NewServer(1)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan struct{}), make(chan error, 1)
	go func() { done <- srv.Serve(ctx, func() { close(ready) }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("serve: %v", err)
	}

	const nobody = 65534
	if out := dialAs(t, endpoint, nobody, nobody); !strings.Contains(out, "dial:") || !strings.Contains(out, "permission denied") {
		t.Errorf("uid %d through the socket's mode: got %q, want a refused dial", nobody, out)
	}
	if err := os.Chmod(endpoint, 0o666); err != nil {
		t.Fatal(err)
	}
	if out := dialAs(t, endpoint, nobody, nobody); !strings.Contains(out, "status:") || strings.Contains(out, "status: ok") {
		t.Errorf("uid %d with the socket open to all: got %q, want the connection refused", nobody, out)
	}
	if out := dialAs(t, endpoint, 0, nobody); !strings.Contains(out, "status: ok") {
		t.Errorf("the server's uid (another gid): got %q, want status ok", out)
	}
	if _, err := CacheStatus(ctx, endpoint); err != nil {
		t.Errorf("status from this process: %v", err)
	}
}
