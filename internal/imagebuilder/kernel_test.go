package imagebuilder

import (
	"archive/tar"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ulikunitz/xz"
)

// fakeMake stands in for the kernel's make: tinyconfig writes a small .config, olddefconfig
// drops $FAKE_MAKE_DROP (as Kconfig drops an option whose dependency is missing), and
// `-jN vmlinux` writes a fake vmlinux, fails with $FAKE_MAKE_FAIL or sleeps $FAKE_MAKE_SLEEP.
// Every call is appended to $FAKE_MAKE_LOG.
const fakeMake = `#!/bin/sh
echo "$*" >> "$FAKE_MAKE_LOG"
case "$1" in
tinyconfig)
	printf 'CONFIG_64BIT=y\n# CONFIG_MODULES is not set\n' > .config ;;
olddefconfig)
	if [ -n "$FAKE_MAKE_DROP" ]; then grep -v "^$FAKE_MAKE_DROP=" .config > .config.new; mv .config.new .config; fi ;;
-j*)
	[ "$2" = vmlinux ] || exit 3
	if [ -n "$FAKE_MAKE_SLEEP" ]; then sleep "$FAKE_MAKE_SLEEP"; fi
	if [ -n "$FAKE_MAKE_FAIL" ]; then echo "ld: undefined reference to boom" >&2; exit 2; fi
	printf 'fake vmlinux\n' > vmlinux ;;
*)
	echo "fake make: unexpected $*" >&2; exit 4 ;;
esac
`

// fakeMergeConfig is scripts/kconfig/merge_config.sh in the fake source tarball.
const fakeMergeConfig = `#!/bin/sh
[ "$1" = -m ] || exit 9
cat "$3" >> "$2"
`

const testFragment = "CONFIG_64BIT=y\nCONFIG_VIRTIO=y\n# CONFIG_MODULES is not set\n"

type kernelEnv struct {
	cache   string
	tarball string
	makeLog string
	opts    KernelOptions
}

// newKernelEnv puts fake make and dpkg-query on PATH and writes a fake linux-source
// tarball. Tests using it cannot run in parallel (they set environment variables).
func newKernelEnv(t *testing.T) *kernelEnv {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	writeFile(t, filepath.Join(bin, "make"), []byte(fakeMake), 0o755)
	writeFile(t, filepath.Join(bin, "dpkg-query"), []byte("#!/bin/sh\nprintf '1.2.3-4'\n"), 0o755)
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	e := &kernelEnv{
		cache:   filepath.Join(dir, "cache"),
		tarball: filepath.Join(dir, "linux-source-6.1.tar.xz"),
		makeLog: filepath.Join(dir, "make.log"),
	}
	t.Setenv("FAKE_MAKE_LOG", e.makeLog)
	for _, k := range []string{"FAKE_MAKE_DROP", "FAKE_MAKE_FAIL", "FAKE_MAKE_SLEEP"} {
		t.Setenv(k, "")
	}
	writeSourceTarball(t, e.tarball)
	e.opts = KernelOptions{CacheDir: e.cache, Jobs: 3, SourceTarball: e.tarball, SourceVersion: "1.2.3-4", Fragment: []byte(testFragment)}
	return e
}

func writeSourceTarball(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zw, err := xz.NewWriter(f)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(zw)
	for _, e := range []struct {
		name string
		mode int64
		body string
	}{
		{"linux-source-6.1/", 0o755, ""},
		{"linux-source-6.1/Makefile", 0o644, "# fake\n"},
		{"linux-source-6.1/scripts/", 0o755, ""},
		{"linux-source-6.1/scripts/kconfig/", 0o755, ""},
		{"linux-source-6.1/scripts/kconfig/merge_config.sh", 0o755, fakeMergeConfig},
	} {
		hdr := &tar.Header{Name: e.name, Mode: e.mode, Size: int64(len(e.body)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}
		if strings.HasSuffix(e.name, "/") {
			hdr.Typeflag = tar.TypeDir
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []interface{ Close() error }{tw, zw} {
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func (e *kernelEnv) makeCalls(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(e.makeLog)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(data)), "\n")
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
	if got, want := strings.Join(e.makeCalls(t), "|"), "tinyconfig|olddefconfig|-j3 vmlinux"; got != want {
		t.Errorf("make calls = %s, want %s", got, want)
	}
	e.assertClean(t, key, true)

	if _, err := BuildKernel(ctx, e.opts); err != nil {
		t.Fatalf("second BuildKernel: %v", err)
	}
	if n := len(e.makeCalls(t)); n != 3 {
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
			if got := strings.Join(e.makeCalls(t), "|"); got != tt.wantCalls {
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
	unlock, err := lockFile(testContext(t), filepath.Join(kdir, ".lock"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(testContext(t), 300*time.Millisecond)
	defer cancel()
	if _, err := BuildKernel(ctx, e.opts); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), ".lock") {
		t.Fatalf("BuildKernel with the lock held: %v, want a lock wait that times out", err)
	}
	if calls := e.makeCalls(t); len(calls) != 0 {
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
	for _, c := range e.makeCalls(t) {
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
