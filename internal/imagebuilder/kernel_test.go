package imagebuilder

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vessel-containers/vessel/internal/imagebuilder/kerneltest"
)

const testFragment = "CONFIG_64BIT=y\nCONFIG_VIRTIO=y\n# CONFIG_MODULES is not set\n"

type kernelEnv struct {
	*kerneltest.Env
	cache string
	opts  KernelOptions
}

// newKernelEnv sets up a fake kernel build (kerneltest). Tests using it cannot run in
// parallel (they set environment variables).
func newKernelEnv(t *testing.T) *kernelEnv {
	t.Helper()
	env := kerneltest.Setup(t, "1.2.3-4")
	e := &kernelEnv{Env: env, cache: filepath.Join(t.TempDir(), "cache")}
	e.opts = KernelOptions{CacheDir: e.cache, Jobs: 3, SourceTarball: env.Tarball, SourceVersion: "1.2.3-4", Fragment: []byte(testFragment)}
	return e
}

// assertClean checks that the kernel cache holds no build tree or temporary entry, and
// holds a cache entry only when wantEntry.
func (e *kernelEnv) assertClean(t *testing.T, key string, wantEntry bool) {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(e.cache, "kernel"))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range entries {
		switch n := d.Name(); {
		case n == ".lock", n == key+".build.log":
		case n == key && wantEntry:
		default:
			t.Errorf("unexpected %s left in the kernel cache", n)
		}
	}
	if _, err := os.Stat(KernelCachePath(e.cache, key)); wantEntry != (err == nil) {
		t.Errorf("cache entry present = %v, want %v", err == nil, wantEntry)
	}
}

func TestBuildKernelMissThenHit(t *testing.T) {
	e := newKernelEnv(t)
	ctx := testContext(t)
	key := KernelCacheKey([]byte(testFragment), "1.2.3-4")
	// A partial entry from an interrupted manual copy is replaced.
	writeFile(t, filepath.Join(e.cache, "kernel", key, "config"), []byte("stale"), 0o644)

	path, err := BuildKernel(ctx, e.opts)
	if err != nil {
		t.Fatalf("BuildKernel: %v", err)
	}
	if want := KernelCachePath(e.cache, key); path != want {
		t.Errorf("path = %s, want %s", path, want)
	}
	if got, _ := os.ReadFile(path); string(got) != "fake vmlinux\n" {
		t.Errorf("vmlinux = %q", got)
	}
	config, err := os.ReadFile(filepath.Join(filepath.Dir(path), "config"))
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyConfig([]byte(testFragment), config); err != nil {
		t.Errorf("cached config: %v", err)
	}
	if got, want := strings.Join(e.Calls(t), "|"), "tinyconfig|olddefconfig|-j3 vmlinux"; got != want {
		t.Errorf("make calls = %s, want %s", got, want)
	}
	e.assertClean(t, key, true)

	if _, err := BuildKernel(ctx, e.opts); err != nil {
		t.Fatalf("second BuildKernel: %v", err)
	}
	if n := len(e.Calls(t)); n != 3 {
		t.Errorf("a cache hit ran make (%d calls in all)", n)
	}
}

func TestBuildKernelFailures(t *testing.T) {
	tests := []struct {
		name      string
		env       map[string]string
		fragment  string
		want      []string
		wantCalls string
	}{
		{
			name:      "fragment option dropped",
			env:       map[string]string{"FAKE_MAKE_DROP": "CONFIG_VIRTIO"},
			want:      []string{"CONFIG_VIRTIO: want y, got unset (a dependency is missing)", ".build.log"},
			wantCalls: "tinyconfig|olddefconfig",
		},
		{
			name:      "make vmlinux fails",
			env:       map[string]string{"FAKE_MAKE_FAIL": "1"},
			want:      []string{"make vmlinux: exit status 2", ".build.log", "ld: undefined reference to boom"},
			wantCalls: "tinyconfig|olddefconfig|-j3 vmlinux",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newKernelEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			_, err := BuildKernel(testContext(t), e.opts)
			if err == nil {
				t.Fatal("BuildKernel succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if got := strings.Join(e.Calls(t), "|"); got != tt.wantCalls {
				t.Errorf("make calls = %s, want %s", got, tt.wantCalls)
			}
			e.assertClean(t, KernelCacheKey([]byte(testFragment), "1.2.3-4"), false)
		})
	}
}

func TestBuildKernelCancelKillsMake(t *testing.T) {
	e := newKernelEnv(t)
	t.Setenv("FAKE_MAKE_SLEEP", "30")
	ctx, cancel := context.WithTimeout(testContext(t), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := BuildKernel(ctx, e.opts)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("BuildKernel error = %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("cancel took %s: make's process group was not killed", d)
	}
	e.assertClean(t, KernelCacheKey([]byte(testFragment), "1.2.3-4"), false)
}

func TestBuildKernelLock(t *testing.T) {
	e := newKernelEnv(t)
	kdir := filepath.Join(e.cache, "kernel")
	if err := os.MkdirAll(kdir, 0o755); err != nil {
		t.Fatal(err)
	}
	unlock, err := lockFile(testContext(t), filepath.Join(kdir, ".lock"), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(testContext(t), 300*time.Millisecond)
	defer cancel()
	if _, err := BuildKernel(ctx, e.opts); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), ".lock") {
		t.Fatalf("BuildKernel with the lock held: %v, want a lock wait that times out", err)
	}
	if calls := e.Calls(t); len(calls) != 0 {
		t.Fatalf("make ran while the lock was held: %v", calls)
	}
	unlock()

	// Two concurrent builds: one compiles, the other waits and hits the cache.
	t.Setenv("FAKE_MAKE_SLEEP", "0.3")
	var wg sync.WaitGroup
	paths, errs := make([]string, 2), make([]error, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			paths[i], errs[i] = BuildKernel(testContext(t), e.opts)
		}()
	}
	wg.Wait()
	for i := range 2 {
		if errs[i] != nil {
			t.Fatalf("build %d: %v", i, errs[i])
		}
	}
	if paths[0] != paths[1] {
		t.Errorf("paths differ: %v", paths)
	}
	vmlinuxBuilds := 0
	for _, c := range e.Calls(t) {
		if strings.HasSuffix(c, "vmlinux") {
			vmlinuxBuilds++
		}
	}
	if vmlinuxBuilds != 1 {
		t.Errorf("make vmlinux ran %d times, want 1", vmlinuxBuilds)
	}
}

func TestBuildKernelSourceErrors(t *testing.T) {
	e := newKernelEnv(t)
	ctx := testContext(t)

	opts := e.opts
	opts.SourceTarball = filepath.Join(t.TempDir(), "missing.tar.xz")
	if _, err := BuildKernel(ctx, opts); err == nil || !strings.Contains(err.Error(), "apt-get install linux-source-6.1") {
		t.Errorf("missing tarball: %v, want the apt-get hint", err)
	}

	// The version comes from dpkg-query when not given.
	opts = e.opts
	opts.SourceVersion = ""
	path, err := BuildKernel(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(path, "-1.2.3-4/") {
		t.Errorf("path %s does not carry the dpkg-query version", path)
	}

	bin := t.TempDir()
	writeFile(t, filepath.Join(bin, "dpkg-query"), []byte("#!/bin/sh\necho \"dpkg-query: no packages found matching $4\" >&2\nexit 1\n"), 0o755)
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	if _, err := BuildKernel(ctx, opts); err == nil ||
		!strings.Contains(err.Error(), "apt-get install linux-source-6.1") ||
		!strings.Contains(err.Error(), "no packages found") {
		t.Errorf("package not installed: %v, want the apt-get hint and dpkg-query's message", err)
	}
}

func TestBuildKernelProgress(t *testing.T) {
	e := newKernelEnv(t)
	t.Setenv("FAKE_MAKE_STEPS", "40")
	kdir := filepath.Join(e.cache, "kernel")
	// The estimate is the last finished build's count; an unfinished build's log is not.
	kerneltest.WriteBuildLog(t, kdir, "older", 50)
	unfinished := filepath.Join(kdir, "newer.build.log")
	writeFile(t, unfinished, []byte("==> make vmlinux\n  CC      a.o\n"), 0o644)

	var (
		mu     sync.Mutex
		events []Event
	)
	opts := e.opts
	opts.Progress = func(ev Event) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, ev)
	}
	if _, err := BuildKernel(testContext(t), opts); err != nil {
		t.Fatalf("BuildKernel: %v", err)
	}
	var stages []string
	byStage := map[string][]Event{}
	for _, ev := range events {
		if len(stages) == 0 || stages[len(stages)-1] != ev.Stage {
			stages = append(stages, ev.Stage)
		}
		byStage[ev.Stage] = append(byStage[ev.Stage], ev)
	}
	want := []string{"kernel: extract source", "kernel: make tinyconfig", "kernel: merge fragment", "kernel: make olddefconfig", "kernel: make vmlinux"}
	if strings.Join(stages, "|") != strings.Join(want, "|") {
		t.Fatalf("stages = %q, want %q", stages, want)
	}
	fi, err := os.Stat(e.Tarball)
	if err != nil {
		t.Fatal(err)
	}
	ex := byStage["kernel: extract source"]
	if last := ex[len(ex)-1]; last.Done != fi.Size() || last.Total != fi.Size() || last.Unit != "bytes" || last.Estimated {
		t.Errorf("last extract event = %+v, want the tarball's %d bytes read of %d", last, fi.Size(), fi.Size())
	}
	mk := byStage["kernel: make vmlinux"]
	if len(mk) != 41 { // the stage's start, then one per step
		t.Fatalf("make vmlinux events = %d, want 41: %+v", len(mk), mk)
	}
	for i, ev := range mk[1:] {
		if ev.Done != int64(i+1) || ev.Total != 50 || !ev.Estimated || ev.Unit != "objects" {
			t.Errorf("make vmlinux event %d = %+v, want %d of about 50 objects", i, ev, i+1)
		}
	}

	// The next build of another key estimates from this one's 40 steps.
	if got := kernelStepEstimate(kdir); got != 40 {
		t.Errorf("estimate after the build = %d, want 40", got)
	}
	if got := kernelStepEstimate(t.TempDir()); got != DefaultKernelSteps {
		t.Errorf("estimate without logs = %d, want DefaultKernelSteps", got)
	}
}
