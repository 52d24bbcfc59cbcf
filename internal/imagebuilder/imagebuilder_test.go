package imagebuilder

import (
	"context"
	"debug/elf"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func readManifest(t *testing.T, dir string) Manifest {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if err != nil {
		t.Fatal(err)
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("manifest.json: %v", err)
	}
	return m
}

// assertManifestFiles checks each image file's size and digest against the manifest.
func assertManifestFiles(t *testing.T, dir string, m Manifest) {
	t.Helper()
	for _, f := range []ManifestFile{m.Kernel.ManifestFile, m.Initramfs} {
		size, sum, err := fileDigest(filepath.Join(dir, f.Path))
		if err != nil {
			t.Fatal(err)
		}
		if size != f.Size || sum != f.SHA256 {
			t.Errorf("%s: size %d sha256 %s, manifest says %d %s", f.Path, size, sum, f.Size, f.SHA256)
		}
	}
}

func TestBuildWithCachedKernel(t *testing.T) {
	dir := t.TempDir()
	cache := filepath.Join(dir, "cache")
	key := KernelCacheKey(KernelFragment(), "6.1.192-2")
	writeFile(t, KernelCachePath(cache, key), []byte("cached vmlinux"), 0o644)
	out := filepath.Join(dir, "guest")
	writeFile(t, filepath.Join(out, VmlinuzName), []byte("stale debian kernel"), 0o644)

	got, err := Build(testContext(t), Options{
		Agent:         staticBinary(t, dir, "vessel-agent"),
		OutputDir:     out,
		DebugConsole:  true,
		Busybox:       staticBinary(t, dir, "busybox"),
		KernelOptions: KernelOptions{CacheDir: cache, SourceVersion: "6.1.192-2", SourceTarball: "/nonexistent"},
	})
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	if data, _ := os.ReadFile(filepath.Join(out, VmlinuxName)); string(data) != "cached vmlinux" {
		t.Errorf("vmlinux = %q", data)
	}
	m := readManifest(t, out)
	if m.Kernel.Source != KernelBuild || m.Kernel.Key != key || m.Kernel.Version != "6.1.192-2" || m.Kernel.Path != VmlinuxName {
		t.Errorf("manifest kernel = %+v", m.Kernel)
	}
	if m.Initramfs.Path != InitramfsName || !m.DebugConsole || m.Compression != "lz4" || time.Since(m.BuiltAt) > time.Minute {
		t.Errorf("manifest = %+v", m)
	}
	if m.Agent.Path != filepath.Join(dir, "vessel-agent") || len(m.Agent.SHA256) != 64 {
		t.Errorf("manifest agent = %+v", m.Agent)
	}
	if got.Kernel != m.Kernel || got.Initramfs != m.Initramfs {
		t.Errorf("returned manifest %+v differs from the file %+v", got, m)
	}
	assertManifestFiles(t, out, m)
	assertNoTempFiles(t, out, VmlinuxName, InitramfsName, ManifestName)

	names := map[string]bool{}
	for _, e := range parseNewc(t, unlz4(t, filepath.Join(out, InitramfsName))) {
		names[e.name] = true
	}
	if !names["bin/busybox"] || !names["bin/sh"] || names[ModulesOrderPath] {
		t.Errorf("initramfs entries %v: want busybox and no modules.order", names)
	}
}

func TestBuildDebianKernel(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	rel := "6.1.0-28-cloud-amd64"
	writeDebianRoot(t, root, rel)
	out := filepath.Join(dir, "guest")
	writeFile(t, filepath.Join(out, VmlinuxName), []byte("stale built kernel"), 0o644)

	_, err := Build(testContext(t), Options{
		Agent:      staticBinary(t, dir, "vessel-agent"),
		OutputDir:  out,
		Kernel:     KernelDebian,
		DebianRoot: root,
	})
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	m := readManifest(t, out)
	if m.Kernel.Source != KernelDebian || m.Kernel.Version != rel || m.Kernel.Path != VmlinuzName || m.Kernel.Key != "" {
		t.Errorf("manifest kernel = %+v", m.Kernel)
	}
	assertManifestFiles(t, out, m)
	assertNoTempFiles(t, out, VmlinuzName, InitramfsName, ManifestName)
	if !slices.Contains(m.MissingModules, "9p") || slices.Contains(m.MissingModules, "virtiofs") {
		t.Errorf("missing modules = %v, want 9p and not virtiofs", m.MissingModules)
	}

	entries := map[string]newcEntry{}
	for _, e := range parseNewc(t, unlz4(t, filepath.Join(out, InitramfsName))) {
		entries[e.name] = e
	}
	order := strings.Split(strings.TrimSpace(string(entries[ModulesOrderPath].body)), "\n")
	if !slices.Equal(order, m.Modules) {
		t.Errorf("modules.order %v differs from the manifest %v", order, m.Modules)
	}
	if len(order) == 0 || !strings.HasSuffix(order[0], "/virtio_pci_modern_dev.ko") || !strings.HasSuffix(order[1], "/virtio_pci.ko") {
		t.Errorf("modules.order = %v: want virtio_pci's dependency then virtio_pci first", order)
	}
	for _, p := range order {
		if _, ok := entries[p]; !ok {
			t.Errorf("modules.order lists %s, which is not in the initramfs", p)
		}
	}
}

// writeDebianRoot writes boot/vmlinuz-<rel> and a module tree with the required guest
// modules (xz-compressed), virtiofs, no 9p, and overlay built in.
func writeDebianRoot(t *testing.T, root, rel string) {
	t.Helper()
	writeFile(t, filepath.Join(root, "boot", "vmlinuz-"+rel), []byte("bzImage"), 0o644)
	mdir := filepath.Join(root, "lib", "modules", rel)
	writeModule(t, mdir, "kernel/drivers/virtio/virtio_pci.ko.xz", "virtio_pci_modern_dev")
	writeModule(t, mdir, "kernel/drivers/virtio/virtio_pci_modern_dev.ko.xz")
	writeModule(t, mdir, "kernel/drivers/char/virtio_console.ko.xz")
	writeModule(t, mdir, "kernel/drivers/char/hw_random/virtio-rng.ko.xz", "rng_core")
	writeModule(t, mdir, "kernel/drivers/char/hw_random/rng-core.ko.xz")
	writeModule(t, mdir, "kernel/drivers/block/virtio_blk.ko.xz")
	writeModule(t, mdir, "kernel/drivers/net/virtio_net.ko.xz", "net_failover")
	writeModule(t, mdir, "kernel/drivers/net/net_failover.ko.xz", "failover")
	writeModule(t, mdir, "kernel/net/core/failover.ko.xz")
	writeModule(t, mdir, "kernel/fs/fuse/virtiofs.ko.xz", "fuse")
	writeModule(t, mdir, "kernel/fs/fuse/fuse.ko.xz")
	writeFile(t, filepath.Join(mdir, "modules.builtin"), []byte("kernel/fs/overlayfs/overlay.ko\n"), 0o644)
}

func TestBuildFailureKeepsPreviousImage(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	writeDebianRoot(t, root, "6.1.0-1-amd64")
	// The kernel image cannot be copied: the build fails after staging has begun.
	vmlinuz := filepath.Join(root, "boot", "vmlinuz-6.1.0-1-amd64")
	if err := os.Remove(vmlinuz); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(vmlinuz, 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "guest")
	previous := map[string]string{VmlinuxName: "old kernel", InitramfsName: "old initramfs", ManifestName: "{}"}
	for name, body := range previous {
		writeFile(t, filepath.Join(out, name), []byte(body), 0o644)
	}
	_, err := Build(testContext(t), Options{Agent: staticBinary(t, dir, "agent"), OutputDir: out, Kernel: KernelDebian, DebianRoot: root})
	if err == nil || !strings.Contains(err.Error(), "install kernel") {
		t.Fatalf("Build error = %v, want an install kernel failure", err)
	}
	for name, body := range previous {
		if got, _ := os.ReadFile(filepath.Join(out, name)); string(got) != body {
			t.Errorf("%s = %q after a failed build, want the previous %q", name, got, body)
		}
	}
	assertNoTempFiles(t, out, VmlinuxName, InitramfsName, ManifestName)
}

func TestBuildErrors(t *testing.T) {
	dir := t.TempDir()
	static := staticBinary(t, dir, "agent")
	dynamic := writeFile(t, filepath.Join(dir, "dyn"), testELF{typ: elf.ET_EXEC, entry: 1, interp: "/lib/ld.so"}.bytes(t), 0o755)
	// KernelOptions point at nothing usable: every case must fail before a kernel build.
	kopts := KernelOptions{CacheDir: filepath.Join(dir, "cache"), SourceVersion: "1", SourceTarball: "/nonexistent"}
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"no agent", Options{}, "make agent"},
		{"missing agent", Options{Agent: filepath.Join(dir, "nope")}, "run `make agent`"},
		{"dynamic agent", Options{Agent: dynamic, KernelOptions: kopts}, "dynamically linked"},
		{"bad kind", Options{Agent: static, Kernel: "custom"}, `kernel "custom": want "build" or "debian"`},
		{"dynamic busybox", Options{Agent: static, DebugConsole: true, Busybox: dynamic, KernelOptions: kopts}, "busybox-static"},
		{"no kernel source", Options{Agent: static, KernelOptions: kopts}, "apt-get install linux-source-6.1"},
		{"no debian kernel", Options{Agent: static, Kernel: KernelDebian, DebianRoot: dir}, "linux-image-cloud-amd64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.OutputDir = filepath.Join(dir, "out")
			_, err := Build(context.Background(), tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Build error = %v, want it to contain %q", err, tt.want)
			}
			if _, err := os.Stat(tt.opts.OutputDir); err == nil {
				t.Error("output directory created despite the error")
			}
		})
	}
}
