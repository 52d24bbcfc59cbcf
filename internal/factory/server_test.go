package factory

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/vessel-containers/vessel/internal/hypervisor"
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
