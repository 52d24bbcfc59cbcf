package factory

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	factoryv1 "github.com/vessel-containers/vessel/api/factory/v1"
	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/procid"
)

// fakeVM is a hypervisor.VM and Detacher that records calls; die makes it exit.
type fakeVM struct {
	id   string
	done chan struct{}

	// mu guards stopped, detached, state and dieOnce.
	mu       sync.Mutex
	stopped  bool
	detached bool
	state    hypervisor.State
	dieOnce  sync.Once
}

func newFakeVM(id string) *fakeVM {
	return &fakeVM{id: id, done: make(chan struct{}), state: hypervisor.StateRunning}
}

func (v *fakeVM) die() { v.dieOnce.Do(func() { close(v.done) }) }

func (v *fakeVM) Start(context.Context) error { return nil }
func (v *fakeVM) Stop(context.Context) error {
	v.mu.Lock()
	v.stopped = true
	v.mu.Unlock()
	v.die()
	return nil
}
func (v *fakeVM) Pause(context.Context) error  { return nil }
func (v *fakeVM) Resume(context.Context) error { return nil }
func (v *fakeVM) State(context.Context) (hypervisor.State, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.state, nil
}
func (v *fakeVM) Agent() hypervisor.AgentAddress { return hypervisor.AgentAddress{} }
func (v *fakeVM) Pid() int                       { return os.Getpid() }
func (v *fakeVM) Done() <-chan struct{}          { return v.done }
func (v *fakeVM) Err() error                     { return errors.New("fake vm died") }
func (v *fakeVM) Detach(context.Context) (hypervisor.Adoption, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.detached = true
	return hypervisor.Adoption{Pid: 42, StartTime: 7}, nil
}

func (v *fakeVM) isStopped() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.stopped
}

// fakeBooter boots fakeVMs, failing while fail is set.
type fakeBooter struct {
	// mu guards vms and fail.
	mu   sync.Mutex
	vms  []*fakeVM
	fail bool
}

func (b *fakeBooter) boot(ctx context.Context, id, dir string) (hypervisor.VM, bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail {
		return nil, false, errors.New("boot failed on purpose")
	}
	if _, err := os.Stat(filepath.Join(dir, "shared")); err != nil {
		return nil, false, err
	}
	vm := newFakeVM(id)
	if err := writeVMRecord(dir, vm); err != nil {
		return nil, false, err
	}
	b.vms = append(b.vms, vm)
	return vm, true, nil
}

func (b *fakeBooter) setFail(fail bool) {
	b.mu.Lock()
	b.fail = fail
	b.mu.Unlock()
}

func (b *fakeBooter) vm(i int) *fakeVM {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.vms[i]
}

func (b *fakeBooter) all() []*fakeVM {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]*fakeVM(nil), b.vms...)
}

func (b *fakeBooter) booted() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.vms)
}

func newTestCache(t *testing.T, target int) (*cache, *fakeBooter) {
	t.Helper()
	b := &fakeBooter{}
	key := Key{{"driver", "fake"}}
	c, err := newCache(context.Background(), cacheConfig{
		dir: filepath.Join(t.TempDir(), "vmcache"), target: target, key: key,
		shape: Shape{VCPUs: 1, MaxVCPUs: 2, MemoryMiB: 256, MaxMemoryMiB: 512, MemorySlots: 2}, boot: b.boot,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.close(context.Background()) })
	return c, b
}

// eventually polls cond: the refill loop runs on its own goroutine.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func readyCount(c *cache) func() bool {
	return func() bool { st := c.status(); return len(st.Ready) == int(st.Target) && st.Booting == 0 }
}

func request(c *cache) *factoryv1.GetVMRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	return &factoryv1.GetVMRequest{SandboxId: "sb", ConfigHash: c.hash, Key: keyToProto(c.key), Vcpus: 1, MemoryMib: 256}
}

func TestCacheRefills(t *testing.T) {
	c, b := newTestCache(t, 2)
	eventually(t, "2 ready", readyCount(c))
	ctx := context.Background()
	e, ad, err := c.take(ctx, request(c))
	if err != nil {
		t.Fatal(err)
	}
	if ad.Pid != 42 || ad.StartTime != 7 || !e.vm.(*fakeVM).detached {
		t.Errorf("take: adoption %+v, detached %v", ad, e.vm.(*fakeVM).detached)
	}
	if _, err := os.Stat(filepath.Join(e.dir, vmRecordName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("vm record left in a handed-out vm's dir: %v", err)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "shared")); err != nil {
		t.Errorf("shared dir of a handed-out vm: %v", err)
	}
	eventually(t, "a refill", readyCount(c))
	if n := b.booted(); n != 3 {
		t.Errorf("booted %d vms, want 3", n)
	}
	st := c.status()
	if st.HandedOut != 1 || st.Discarded != 0 || len(st.Ready) != 2 || !st.Ready[0].FromTemplate {
		t.Errorf("status after one take: %+v", st)
	}
}

func TestCacheRefusesMismatches(t *testing.T) {
	c, _ := newTestCache(t, 1)
	eventually(t, "1 ready", readyCount(c))
	for _, tc := range []struct {
		name string
		edit func(*factoryv1.GetVMRequest)
		want string
	}{
		{"config", func(r *factoryv1.GetVMRequest) {
			r.Key = keyToProto(Key{{"driver", "other"}})
			r.ConfigHash = Key{{"driver", "other"}}.Hash()
		}, "differs in driver"},
		{"too big", func(r *factoryv1.GetVMRequest) { r.Vcpus = 4 }, "can grow to 2"},
		{"too small", func(r *factoryv1.GetVMRequest) { r.MemoryMib = 128 }, "less than the 256 MiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := request(c)
			tc.edit(req)
			_, _, err := c.take(context.Background(), req)
			if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("take: got %v, want FailedPrecondition mentioning %q", err, tc.want)
			}
		})
	}
	if st := c.status(); len(st.Ready) != 1 || st.HandedOut != 0 {
		t.Errorf("a refused request changed the cache: %+v", st)
	}
}

func TestCacheDiscardsDeadVMs(t *testing.T) {
	c, b := newTestCache(t, 1)
	eventually(t, "1 ready", readyCount(c))
	first := b.vm(0)
	dir := filepath.Join(c.cfg.dir, first.id)
	first.die()
	eventually(t, "a replacement", func() bool { return c.status().Discarded == 1 && readyCount(c)() })
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dir of a dead vm: %v", err)
	}
	if st := c.status(); st.Ready[0].VmId == first.id {
		t.Error("the dead vm is still ready")
	}

	// A VM that dies or stops running after it was picked is replaced by the next one.
	eventually(t, "2 vms", func() bool { return b.booted() == 2 })
	second := b.vm(1)
	second.mu.Lock()
	second.state = hypervisor.StatePaused
	second.mu.Unlock()
	// take discards it and hands out a replacement if one is already booted (fake boots
	// are instant), else reports that none is ready.
	e, _, err := c.take(context.Background(), request(c))
	switch {
	case err == nil && e.vm == hypervisor.VM(second):
		t.Error("take handed out a paused vm")
	case err != nil && !errdefs.IsNotFound(err):
		t.Errorf("take after a paused vm: got %v, want a vm or NotFound", err)
	}
	if !second.isStopped() {
		t.Error("the paused vm was not stopped")
	}
	eventually(t, "refilled", readyCount(c))
	if _, _, err := c.take(context.Background(), request(c)); err != nil {
		t.Errorf("take after refill: %v", err)
	}
}

func TestCacheRetriesFailedBoots(t *testing.T) {
	b := &fakeBooter{fail: true}
	c, err := newCache(context.Background(), cacheConfig{dir: t.TempDir(), target: 1, key: Key{{"a", "b"}}, boot: b.boot})
	if err != nil {
		t.Fatal(err)
	}
	defer c.close(context.Background())
	eventually(t, "a failed boot", func() bool { return c.status().BootFailures >= 1 })
	if st := c.status(); !strings.Contains(st.LastError, "on purpose") {
		t.Errorf("last error %q", st.LastError)
	}
	b.setFail(false)
	// The retry comes after a 1 s pause.
	deadline := time.Now().Add(5 * time.Second)
	for len(c.status().Ready) != 1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if len(c.status().Ready) != 1 {
		t.Fatal("no vm after boots work again")
	}
}

func TestCacheCloseStopsEverything(t *testing.T) {
	before := runtime.NumGoroutine()
	c, b := newTestCache(t, 3)
	eventually(t, "3 ready", readyCount(c))
	c.close(context.Background())
	for _, vm := range b.all() {
		if !vm.isStopped() {
			t.Errorf("vm %s not stopped by close", vm.id)
		}
	}
	if _, err := os.Stat(c.cfg.dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cache dir after close: %v", err)
	}
	// The refill loop and the watchers are gone.
	eventually(t, "goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
}

func TestCacheRemovesLeftovers(t *testing.T) {
	dir := t.TempDir()
	// A VM of a crashed cache: a process with a record, and a directory without one.
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	rec, err := procid.Of(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "cache-old", "shared"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := writeJSON(filepath.Join(dir, "cache-old", vmRecordName), rec); err != nil {
		t.Fatal(err)
	}
	// A record whose start time does not match names another process: left alone.
	if err := os.MkdirAll(filepath.Join(dir, "cache-recycled"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := writeJSON(filepath.Join(dir, "cache-recycled", vmRecordName), procid.ID{Pid: os.Getpid(), StartTime: 1}); err != nil {
		t.Fatal(err)
	}
	removeLeftovers(context.Background(), cacheConfig{dir: dir})
	select {
	case err := <-waited:
		if err == nil {
			t.Error("the leftover process exited cleanly, want killed")
		}
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		t.Error("the leftover process was not killed")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("left in the cache dir: %v", entries)
	}
}

func TestCacheReplacesStaleVMs(t *testing.T) {
	b := &fakeBooter{}
	// mu guards current.
	var mu sync.Mutex
	current := Key{{"initrd.file", "v1"}}
	c, err := newCache(context.Background(), cacheConfig{
		dir: t.TempDir(), target: 2, key: current, boot: b.boot,
		shape: Shape{VCPUs: 1, MaxVCPUs: 1, MemoryMiB: 256, MaxMemoryMiB: 256},
		currentKey: func() Key {
			mu.Lock()
			defer mu.Unlock()
			return current
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.close(context.Background())
	eventually(t, "2 ready", readyCount(c))
	old := b.all()

	// The guest image is rebuilt: shims now ask for the new key.
	mu.Lock()
	current = Key{{"initrd.file", "v2"}}
	mu.Unlock()
	req := request(c)
	req.ConfigHash, req.Key = current.Hash(), keyToProto(current)
	if _, _, err := c.take(context.Background(), req); !errdefs.IsNotFound(err) {
		t.Errorf("first request after the change: got %v, want NotFound (refreshing)", err)
	}
	for _, vm := range old {
		if !vm.isStopped() {
			t.Errorf("stale vm %s not stopped", vm.id)
		}
	}
	eventually(t, "2 fresh vms", readyCount(c))
	if st := c.status(); st.ConfigHash != current.Hash() || st.Discarded != 2 {
		t.Errorf("status after refresh: %+v", st)
	}
	if _, _, err := c.take(context.Background(), req); err != nil {
		t.Errorf("request with the new key: %v", err)
	}
}
