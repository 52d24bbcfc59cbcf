package imagebuilder

import (
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed" // the project kernel fragment
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"
)

const (
	// DefaultCacheDir holds built kernels under kernel/<key>/.
	DefaultCacheDir = "/var/cache/vessel"
	// KernelSourcePackage is the Debian package that ships the kernel source tarball.
	KernelSourcePackage = "linux-source-6.1"
	// DefaultKernelSource is the tarball KernelSourcePackage installs.
	DefaultKernelSource = "/usr/src/linux-source-6.1.tar.xz"
)

//go:embed kernel/vessel.config
var kernelFragment []byte

// KernelFragment returns a copy of the project kernel configuration fragment
// (internal/imagebuilder/kernel/vessel.config).
func KernelFragment() []byte { return bytes.Clone(kernelFragment) }

// KernelOptions configures BuildKernel. Zero values take the defaults noted per field.
type KernelOptions struct {
	// CacheDir is the cache root (default DefaultCacheDir); kernels live in
	// <CacheDir>/kernel/<key>/{vmlinux,config}.
	CacheDir string
	// Jobs is make's -j (default: the number of CPUs).
	Jobs int
	// SourceTarball is the kernel source (default DefaultKernelSource).
	SourceTarball string
	// SourceVersion is the version of KernelSourcePackage; empty asks dpkg-query.
	SourceVersion string
	// Fragment is the configuration merged over tinyconfig (default KernelFragment()).
	Fragment []byte
	// Progress, when set, receives the build's stages and how far each is: the bytes of
	// the source tarball extracted, and the steps `make vmlinux` printed against the
	// count of the last build logged in the cache (DefaultKernelSteps for the first).
	Progress ProgressFunc
}

// KernelCacheKey names a kernel build: the first 12 hex characters of the fragment's
// sha256, a dash and the source package version, e.g. "7b3352a91d9e-6.1.192-2".
func KernelCacheKey(fragment []byte, sourceVersion string) string {
	sum := sha256.Sum256(fragment)
	return hex.EncodeToString(sum[:])[:12] + "-" + sourceVersion
}

// KernelSourceVersion returns the installed version of KernelSourcePackage, as dpkg-query
// reports it (e.g. "6.1.192-2").
func KernelSourceVersion(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "dpkg-query", "-W", "-f=${Version}", KernelSourcePackage).Output()
	hint := "apt-get install " + KernelSourcePackage + ", or use the Debian kernel: --kernel debian"
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && len(ee.Stderr) > 0 {
			err = fmt.Errorf("%w: %s", err, bytes.TrimSpace(ee.Stderr))
		}
		return "", fmt.Errorf("%s is not installed (%s): dpkg-query: %w", KernelSourcePackage, hint, err)
	}
	v := strings.TrimSpace(string(out))
	if v == "" {
		return "", fmt.Errorf("%s is not installed (%s): dpkg-query printed no version", KernelSourcePackage, hint)
	}
	return v, nil
}

// KernelCachePath returns where the kernel for key is cached under cacheDir.
func KernelCachePath(cacheDir, key string) string {
	return filepath.Join(cacheDir, "kernel", key, "vmlinux")
}

// withDefaults fills the zero fields of o.
func (o KernelOptions) withDefaults(ctx context.Context) (KernelOptions, error) {
	if o.CacheDir == "" {
		o.CacheDir = DefaultCacheDir
	}
	if o.Jobs <= 0 {
		o.Jobs = runtime.NumCPU()
	}
	if o.SourceTarball == "" {
		o.SourceTarball = DefaultKernelSource
	}
	if o.Fragment == nil {
		o.Fragment = KernelFragment()
	}
	if o.SourceVersion == "" {
		v, err := KernelSourceVersion(ctx)
		if err != nil {
			return o, err
		}
		o.SourceVersion = v
	}
	return o, nil
}

// BuildKernel returns the path of an uncompressed vmlinux built from Debian's kernel source
// with the project fragment, building it only when the cache has no entry for its key.
// A build extracts the tarball into a temporary tree under the cache directory, runs
// `make tinyconfig`, merges the fragment, runs `make olddefconfig`, checks that every
// fragment option landed, runs `make vmlinux` and moves vmlinux and .config into the cache
// entry in one rename. The tree is removed whether the build succeeds or not; make's output
// goes to <CacheDir>/kernel/<key>.build.log. A lock file serialises builds across processes.
func BuildKernel(ctx context.Context, opts KernelOptions) (string, error) {
	opts, err := opts.withDefaults(ctx)
	if err != nil {
		return "", err
	}
	key := KernelCacheKey(opts.Fragment, opts.SourceVersion)
	vmlinux := KernelCachePath(opts.CacheDir, key)
	logger := log.G(ctx).WithField("kernel", key)
	if cachedKernel(vmlinux) {
		logger.WithField("path", vmlinux).Info("kernel: cache hit")
		opts.Progress.stage("kernel: cached " + key)
		return vmlinux, nil
	}
	if _, err := os.Stat(opts.SourceTarball); err != nil {
		return "", fmt.Errorf("kernel source %s (apt-get install %s, or use --kernel debian): %w",
			opts.SourceTarball, KernelSourcePackage, err)
	}
	kdir := filepath.Dir(filepath.Dir(vmlinux))
	if err := os.MkdirAll(kdir, 0o755); err != nil {
		return "", fmt.Errorf("create kernel cache %s: %w", kdir, err)
	}
	unlock, err := lockFile(ctx, filepath.Join(kdir, ".lock"), opts.Progress)
	if err != nil {
		return "", err
	}
	defer unlock()
	if cachedKernel(vmlinux) { // another process built it while we waited
		logger.WithField("path", vmlinux).Info("kernel: cache hit after waiting for another build")
		opts.Progress.stage("kernel: built by the other build " + key)
		return vmlinux, nil
	}
	logger.WithField("jobs", opts.Jobs).Info("kernel: cache miss, building (about 10 minutes on 2 cores)")
	start := time.Now()
	if err := buildKernel(ctx, opts, kdir, key); err != nil {
		return "", fmt.Errorf("build kernel %s: %w", key, err)
	}
	logger.WithField("duration", time.Since(start).Round(time.Second)).WithField("path", vmlinux).Info("kernel: built")
	return vmlinux, nil
}

// cachedKernel reports whether path is a non-empty regular file.
func cachedKernel(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Size() > 0
}

// buildKernel runs one build into kdir/key.
// Preconditions: the kernel cache lock is held.
func buildKernel(ctx context.Context, opts KernelOptions, kdir, key string) (err error) {
	logPath := filepath.Join(kdir, key+".build.log")
	// Read before this build's log replaces an older one of the same key.
	estimate := kernelStepEstimate(kdir)
	logFile, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("create build log: %w", err)
	}
	defer logFile.Close()

	work, err := os.MkdirTemp(kdir, ".build-"+key+"-")
	if err != nil {
		return fmt.Errorf("create build directory: %w", err)
	}
	defer func() {
		if rerr := os.RemoveAll(work); rerr != nil {
			err = errors.Join(err, fmt.Errorf("remove build tree: %w", rerr))
		}
	}()
	src := filepath.Join(work, "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		return fmt.Errorf("create source directory: %w", err)
	}
	fragPath := filepath.Join(work, "vessel.config")
	if err := os.WriteFile(fragPath, opts.Fragment, 0o644); err != nil {
		return fmt.Errorf("write fragment: %w", err)
	}

	b := &kbuild{logger: log.G(ctx).WithField("kernel", key), log: logFile, logPath: logPath, dir: src, progress: opts.Progress}
	tarball, err := os.Open(opts.SourceTarball)
	if err != nil {
		return fmt.Errorf("open kernel source: %w", err)
	}
	defer tarball.Close()
	fi, err := tarball.Stat()
	if err != nil {
		return fmt.Errorf("kernel source: %w", err)
	}
	// tar reads the tarball from stdin, so the bytes read say how far the extraction is.
	const extract = "extract source"
	extracted := &countingReader{r: tarball, each: func(n int64) {
		opts.Progress.report(Event{Stage: "kernel: " + extract, Done: n, Total: fi.Size(), Unit: "bytes"})
	}}
	tarArgv := append([]string{"tar", "-x"}, tarCompression(opts.SourceTarball)...)
	steps := []kstep{
		{what: extract, argv: append(tarArgv, "-f", "-", "-C", src, "--strip-components=1", "--no-same-owner"), stdin: extracted, start: Event{Total: fi.Size(), Unit: "bytes"}},
		{what: "make tinyconfig", argv: []string{"make", "tinyconfig"}},
		{what: "merge fragment", argv: []string{"scripts/kconfig/merge_config.sh", "-m", ".config", fragPath}},
		{what: "make olddefconfig", argv: []string{"make", "olddefconfig"}},
	}
	for _, s := range steps {
		if err := b.run(ctx, s); err != nil {
			return err
		}
	}
	config, err := os.ReadFile(filepath.Join(src, ".config"))
	if err != nil {
		return fmt.Errorf("read .config (log: %s): %w", logPath, err)
	}
	if err := VerifyConfig(opts.Fragment, config); err != nil {
		return fmt.Errorf("verify fragment (log: %s): %w", logPath, err)
	}
	vmlinuxSteps := &stepCounter{progress: opts.Progress, stage: "kernel: make vmlinux", total: estimate}
	if err := b.run(ctx, kstep{what: "make vmlinux", argv: []string{"make", "-j" + strconv.Itoa(opts.Jobs), "vmlinux"}, lines: vmlinuxSteps.line, start: Event{Total: estimate, Unit: "objects", Estimated: true}}); err != nil {
		return err
	}
	return installKernel(kdir, key, src)
}

// installKernel moves src/vmlinux and src/.config into kdir/key in one directory rename,
// replacing a stale or partial entry.
// Preconditions: the kernel cache lock is held.
func installKernel(kdir, key, src string) (err error) {
	tmp, err := os.MkdirTemp(kdir, ".entry-"+key+"-")
	if err != nil {
		return fmt.Errorf("create cache entry: %w", err)
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(tmp)
		}
	}()
	for from, to := range map[string]string{"vmlinux": "vmlinux", ".config": "config"} {
		dst := filepath.Join(tmp, to)
		if err := os.Rename(filepath.Join(src, from), dst); err != nil {
			return fmt.Errorf("move %s into the cache: %w", from, err)
		}
		if err := syncPath(dst); err != nil {
			return err
		}
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("chmod cache entry: %w", err)
	}
	entry := filepath.Join(kdir, key)
	if err := os.RemoveAll(entry); err != nil {
		return fmt.Errorf("remove stale cache entry: %w", err)
	}
	if err := os.Rename(tmp, entry); err != nil {
		return fmt.Errorf("install cache entry %s: %w", entry, err)
	}
	return syncPath(kdir)
}

// syncPath fsyncs a file or directory.
func syncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return nil
}

// kbuild runs the build's commands in dir with their output appended to log.
type kbuild struct {
	logger   *log.Entry
	log      *os.File
	logPath  string
	dir      string
	progress ProgressFunc
}

// kstep is one command of a kernel build.
type kstep struct {
	// what names the step in logs, errors and progress ("make vmlinux").
	what string
	argv []string
	// stdin, when set, is the command's standard input.
	stdin io.Reader
	// lines, when set, sees each line of the command's standard output.
	lines func(string)
	// start, when its Total is set, is the stage's first progress event (how much work
	// is expected); otherwise the stage starts uncounted.
	start Event
}

// run runs s in b.dir; on failure the error names the step, the log file and the log's
// last lines.
func (b *kbuild) run(ctx context.Context, s kstep) error {
	b.logger.Infof("kernel: %s", s.what)
	start := s.start
	start.Stage = "kernel: " + s.what
	b.progress.report(start)
	fmt.Fprintf(b.log, "==> %s\n$ %s\n", s.what, strings.Join(s.argv, " "))
	began := time.Now()
	cmd := exec.CommandContext(ctx, s.argv[0], s.argv[1:]...)
	cmd.Dir = b.dir
	cmd.Stdin = s.stdin
	cmd.Stdout = b.log
	if s.lines != nil {
		cmd.Stdout = io.MultiWriter(b.log, &lineWriter{fn: s.lines})
	}
	cmd.Stderr = b.log
	cmd.Env = append(os.Environ(), "LC_ALL=C", "KBUILD_BUILD_USER=vessel", "KBUILD_BUILD_HOST=vessel")
	// make forks compilers: kill the whole process group when ctx ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return unix.Kill(-cmd.Process.Pid, unix.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		return fmt.Errorf("%s: %w; log %s ends with:\n%s", s.what, err, b.logPath, tailFile(b.logPath, 15))
	}
	fmt.Fprintf(b.log, "==> %s done in %s\n", s.what, time.Since(began).Round(time.Millisecond))
	return nil
}

// tarCompression is tar's option for the compression a tarball's name says (tar does not
// guess it on a pipe); none for a plain tar.
func tarCompression(name string) []string {
	for suffix, opt := range map[string]string{".xz": "--xz", ".txz": "--xz", ".gz": "--gzip", ".tgz": "--gzip", ".bz2": "--bzip2", ".zst": "--zstd"} {
		if strings.HasSuffix(name, suffix) {
			return []string{opt}
		}
	}
	return nil
}

// tailFile returns the last n lines of path, indented, or a note when it cannot be read.
func tailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return "  (unreadable: " + err.Error() + ")"
	}
	defer f.Close()
	const maxTail = 16 * 1024
	if fi, err := f.Stat(); err == nil && fi.Size() > maxTail {
		_, _ = f.Seek(fi.Size()-maxTail, io.SeekStart)
	}
	data, _ := io.ReadAll(f)
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}

// lockFile takes an exclusive flock on path, waiting (and saying so once) while another
// process holds it, until ctx ends. The returned function releases it.
func lockFile(ctx context.Context, path string, progress ProgressFunc) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	waiting := false
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() {
				_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
				_ = f.Close()
			}, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			_ = f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if !waiting {
			log.G(ctx).WithField("lock", path).Info("kernel: another kernel build holds the lock; waiting")
			waiting = true
		}
		// Every try, so that a terminal's line shows how long the wait has lasted.
		progress.stage("kernel: waiting for another build (" + path + ")")
		select {
		case <-ctx.Done():
			_ = f.Close()
			return nil, fmt.Errorf("wait for kernel build lock %s: %w", path, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}
