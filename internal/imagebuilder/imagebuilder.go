// Package imagebuilder builds the guest image Vessel boots: a kernel and an LZ4 newc
// initramfs whose /init is vessel-agent. The kernel is either built from Debian's
// linux-source-6.1 with the project fragment kernel/vessel.config (everything built in,
// booted as an uncompressed vmlinux through PVH; cached by fragment hash and source
// version) or taken from an installed Debian linux-image package, in which case the
// modules the guest needs go into the initramfs with their dependencies and load order.
// Build writes <dir>/{vmlinux|vmlinuz,initramfs.img,manifest.json}.
package imagebuilder

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/log"
)

// KernelKind says where the guest kernel comes from.
type KernelKind string

const (
	// KernelBuild builds the project kernel from linux-source (BuildKernel).
	KernelBuild KernelKind = "build"
	// KernelDebian uses an installed Debian linux-image package plus modules.
	KernelDebian KernelKind = "debian"
)

const (
	// DefaultOutputDir is where the guest image is installed.
	DefaultOutputDir = "/var/lib/vessel/guest"
	// DefaultBusybox is the static busybox of Debian's busybox-static package.
	DefaultBusybox = "/bin/busybox"
	// InitramfsName, ManifestName, VmlinuxName and VmlinuzName are the file names in the
	// output directory.
	InitramfsName = "initramfs.img"
	ManifestName  = "manifest.json"
	VmlinuxName   = "vmlinux"
	VmlinuzName   = "vmlinuz"
)

// Options configures Build.
type Options struct {
	// Agent is the static vessel-agent binary (required).
	Agent string
	// OutputDir receives the image (default DefaultOutputDir).
	OutputDir string
	// Kernel selects the kernel source (default KernelBuild).
	Kernel KernelKind
	// KernelOptions configures the KernelBuild kind (cache directory, jobs, source).
	KernelOptions KernelOptions
	// DebianRoot is where KernelDebian looks for boot/ and lib/modules/ (default "/").
	DebianRoot string
	// DebugConsole adds busybox and /bin/sh to the initramfs.
	DebugConsole bool
	// Busybox is the static busybox for DebugConsole (default DefaultBusybox).
	Busybox string
	// Progress, when set, receives the build's stages and how far each is (the kernel's
	// through KernelOptions.Progress unless that is set).
	Progress ProgressFunc
}

// Manifest describes a built guest image; it is written last, as manifest.json.
type Manifest struct {
	Kernel    ManifestKernel `json:"kernel"`
	Initramfs ManifestFile   `json:"initramfs"`
	// Agent is the agent binary taken into the initramfs (Path is its host path).
	Agent ManifestFile `json:"agent"`
	// Modules are the initramfs module paths in load order (KernelDebian only).
	Modules []string `json:"modules,omitempty"`
	// MissingModules are optional guest modules the Debian kernel does not provide.
	MissingModules []string  `json:"missing_modules,omitempty"`
	DebugConsole   bool      `json:"debug_console"`
	Compression    string    `json:"compression"`
	BuiltAt        time.Time `json:"built_at"`
}

// ManifestKernel is the kernel file and where it came from.
type ManifestKernel struct {
	ManifestFile
	Source KernelKind `json:"source"`
	// Key is the kernel cache key (KernelBuild).
	Key string `json:"key,omitempty"`
	// Version is the linux-source package version (KernelBuild) or the kernel release
	// (KernelDebian).
	Version string `json:"version"`
}

// ManifestFile is one file: its path (relative to the output directory for image files),
// size and sha256.
type ManifestFile struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Build produces the guest image in opts.OutputDir: the kernel (vmlinux, or vmlinuz for
// KernelDebian), initramfs.img and manifest.json, each written atomically, the manifest
// last. A kernel file of the other kind left by an earlier build is removed.
func Build(ctx context.Context, opts Options) (*Manifest, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(opts.Agent); err != nil {
		return nil, fmt.Errorf("agent binary %s (run `make agent`, or pass --agent): %w", opts.Agent, err)
	}
	if err := CheckStatic(opts.Agent); err != nil {
		return nil, fmt.Errorf("agent: %w (build it with `make agent`)", err)
	}
	if opts.DebugConsole {
		if err := CheckStatic(opts.Busybox); err != nil {
			return nil, fmt.Errorf("debug console busybox: %w (apt-get install busybox-static)", err)
		}
	}
	m := &Manifest{DebugConsole: opts.DebugConsole, Compression: Compression}
	m.Kernel.Source = opts.Kernel
	irfs := InitramfsOptions{Agent: opts.Agent, Progress: opts.Progress}
	if opts.DebugConsole {
		irfs.Busybox = opts.Busybox
	}

	var kernelSrc, kernelName, staleName string
	switch opts.Kernel {
	case KernelBuild:
		kopts := opts.KernelOptions
		if kopts.SourceVersion == "" {
			if kopts.SourceVersion, err = KernelSourceVersion(ctx); err != nil {
				return nil, err
			}
		}
		if kopts.Fragment == nil {
			kopts.Fragment = KernelFragment()
		}
		if kopts.Progress == nil {
			kopts.Progress = opts.Progress
		}
		m.Kernel.Key = KernelCacheKey(kopts.Fragment, kopts.SourceVersion)
		m.Kernel.Version = kopts.SourceVersion
		if kernelSrc, err = BuildKernel(ctx, kopts); err != nil {
			return nil, err
		}
		kernelName, staleName = VmlinuxName, VmlinuzName
	case KernelDebian:
		opts.Progress.stage("kernel: Debian kernel and modules")
		dk, err := FindDebianKernel(opts.DebianRoot)
		if err != nil {
			return nil, err
		}
		required, optional := GuestModules()
		mods, err := ResolveModules(ctx, dk.ModulesDir, required, optional)
		if err != nil {
			return nil, fmt.Errorf("guest modules of %s: %w", dk.Release, err)
		}
		irfs.Modules = mods
		m.Modules, m.MissingModules = mods.OrderLines(), mods.Missing
		m.Kernel.Version = dk.Release
		kernelSrc, kernelName, staleName = dk.Vmlinuz, VmlinuzName, VmlinuxName
		log.G(ctx).WithField("release", dk.Release).WithField("modules", len(mods.Modules)).Info("using the Debian kernel")
	}

	if err := writeImage(ctx, opts.OutputDir, m, kernelSrc, kernelName, irfs); err != nil {
		return nil, err
	}
	if err := os.Remove(filepath.Join(opts.OutputDir, staleName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("remove stale kernel: %w", err)
	}
	return m, nil
}

// writeImage stages the kernel, the initramfs and the manifest in a temporary directory
// inside dir, then renames them into place, the manifest last: a failed build leaves the
// previous image as it was.
func writeImage(ctx context.Context, dir string, m *Manifest, kernelSrc, kernelName string, irfs InitramfsOptions) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create output directory: %w", err)
	}
	stage, err := os.MkdirTemp(dir, ".build-")
	if err != nil {
		return fmt.Errorf("create staging directory: %w", err)
	}
	defer os.RemoveAll(stage)

	kernelPath := filepath.Join(stage, kernelName)
	irfs.Progress.stage("install kernel")
	if err := copyFileAtomic(kernelPath, kernelSrc, 0o644); err != nil {
		return fmt.Errorf("install kernel: %w", err)
	}
	irfs.Output = filepath.Join(stage, InitramfsName)
	if err := BuildInitramfs(ctx, irfs); err != nil {
		return err
	}
	irfs.Progress.stage("manifest")
	for _, f := range []struct {
		dst  *ManifestFile
		path string
		name string
	}{
		{&m.Kernel.ManifestFile, kernelPath, kernelName},
		{&m.Initramfs, irfs.Output, InitramfsName},
		{&m.Agent, irfs.Agent, irfs.Agent},
	} {
		size, sum, err := fileDigest(f.path)
		if err != nil {
			return err
		}
		*f.dst = ManifestFile{Path: f.name, Size: size, SHA256: sum}
	}
	m.BuiltAt = time.Now().UTC().Truncate(time.Second)
	err = writeAtomic(filepath.Join(stage, ManifestName), 0o644, func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(m)
	})
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	for _, name := range []string{kernelName, InitramfsName, ManifestName} {
		if err := os.Rename(filepath.Join(stage, name), filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("install %s: %w", name, err)
		}
	}
	return syncPath(dir)
}

// withDefaults fills zero fields and validates the kernel kind.
func (o Options) withDefaults() (Options, error) {
	if o.Agent == "" {
		return o, errors.New("no agent binary given (run `make agent`, or pass --agent)")
	}
	agent, err := filepath.Abs(o.Agent)
	if err != nil {
		return o, fmt.Errorf("agent path: %w", err)
	}
	o.Agent = agent
	if o.OutputDir == "" {
		o.OutputDir = DefaultOutputDir
	}
	if o.Kernel == "" {
		o.Kernel = KernelBuild
	}
	if o.Kernel != KernelBuild && o.Kernel != KernelDebian {
		return o, fmt.Errorf("kernel %q: want %q or %q", o.Kernel, KernelBuild, KernelDebian)
	}
	if o.Busybox == "" {
		o.Busybox = DefaultBusybox
	}
	return o, nil
}
