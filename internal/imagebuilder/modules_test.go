package imagebuilder

import (
	"bytes"
	"context"
	"debug/elf"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/log"
	"github.com/sirupsen/logrus"
)

// testContext returns a context whose logger writes to t.Log.
func testContext(t *testing.T) context.Context {
	t.Helper()
	l := logrus.New()
	l.SetOutput(tWriter{t})
	l.SetLevel(logrus.DebugLevel)
	return log.WithLogger(context.Background(), logrus.NewEntry(l))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// writeModuleTree writes a Debian-like lib/modules/<release> tree: virtio_ring is built in,
// one module is xz-compressed, one file name uses dashes.
func writeModuleTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	objs := map[string][]byte{
		"virtio_pci_modern_dev": writeModule(t, dir, "kernel/drivers/virtio/virtio_pci_modern_dev.ko.xz", "virtio_ring"),
		"virtio_pci":            writeModule(t, dir, "kernel/drivers/virtio/virtio_pci.ko", "virtio_pci_modern_dev", "virtio_ring"),
		"virtio_console":        writeModule(t, dir, "kernel/drivers/char/virtio_console.ko", "virtio_ring"),
		"rng_core":              writeModule(t, dir, "kernel/drivers/char/hw_random/rng-core.ko"),
		"virtio_rng":            writeModule(t, dir, "kernel/drivers/char/hw_random/virtio-rng.ko", "rng_core"),
		"netfs":                 writeModule(t, dir, "kernel/fs/netfs/netfs.ko"),
		"9pnet":                 writeModule(t, dir, "kernel/net/9p/9pnet.ko"),
		"9pnet_virtio":          writeModule(t, dir, "kernel/net/9p/9pnet_virtio.ko", "9pnet", "virtio_ring"),
		"9p":                    writeModule(t, dir, "kernel/fs/9p/9p.ko", "9pnet", "netfs"),
	}
	writeFile(t, filepath.Join(dir, "modules.builtin"), []byte("kernel/drivers/virtio/virtio.ko\nkernel/drivers/virtio/virtio_ring.ko\nkernel/fs/overlayfs/overlay.ko\n"), 0o644)
	return objs
}

func TestResolveModules(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "lib", "modules", "6.1.0-28-cloud-amd64")
	objs := writeModuleTree(t, dir)

	set, err := ResolveModules(testContext(t), dir,
		[]string{"virtio_pci", "virtio_console", "virtio-rng", "overlay"},
		[]string{"9pnet_virtio", "9p", "virtiofs"})
	if err != nil {
		t.Fatalf("ResolveModules: %v", err)
	}
	var names []string
	for _, m := range set.Modules {
		names = append(names, m.Name)
		if !bytes.Equal(m.Data, objs[m.Name]) {
			t.Errorf("module %s: data is not the uncompressed object", m.Name)
		}
	}
	wantNames := []string{"virtio_pci_modern_dev", "virtio_pci", "virtio_console", "rng_core", "virtio_rng", "9pnet", "9pnet_virtio", "netfs", "9p"}
	if !slices.Equal(names, wantNames) {
		t.Errorf("load order = %v, want %v", names, wantNames)
	}
	if want := []string{"virtio_ring", "overlay"}; !slices.Equal(set.Builtin, want) {
		t.Errorf("Builtin = %v, want %v", set.Builtin, want)
	}
	if want := []string{"virtiofs"}; !slices.Equal(set.Missing, want) {
		t.Errorf("Missing = %v, want %v", set.Missing, want)
	}
	lines := set.OrderLines()
	if lines[0] != "lib/modules/6.1.0-28-cloud-amd64/kernel/drivers/virtio/virtio_pci_modern_dev.ko" {
		t.Errorf("first modules.order line = %q: want a path relative to / with .xz dropped", lines[0])
	}
	assertDepsFirst(t, set)
}

// assertDepsFirst checks that every module comes after all of its non-built-in dependencies.
func assertDepsFirst(t *testing.T, set *ModuleSet) {
	t.Helper()
	pos := map[string]int{}
	for i, m := range set.Modules {
		pos[m.Name] = i
	}
	for i, m := range set.Modules {
		for _, d := range m.Depends {
			if slices.Contains(set.Builtin, d) {
				continue
			}
			if j, ok := pos[d]; !ok || j > i {
				t.Errorf("module %s (position %d) needs %s (position %d, present %v)", m.Name, i, d, j, ok)
			}
		}
	}
}

func TestResolveModulesErrors(t *testing.T) {
	tests := []struct {
		name     string
		modules  map[string][]string // file -> depends
		required []string
		optional []string
		want     string
	}{
		{
			name:     "cycle",
			modules:  map[string][]string{"a.ko": {"b"}, "b.ko": {"c"}, "c.ko.xz": {"a"}},
			required: []string{"a"},
			want:     "kernel module dependency cycle: a -> b -> c -> a",
		},
		{
			name:     "self cycle",
			modules:  map[string][]string{"a.ko": {"a"}},
			required: []string{"a"},
			want:     "cycle: a -> a",
		},
		{
			name:     "missing dependency",
			modules:  map[string][]string{"a.ko": {"b"}, "b.ko": {"zz"}},
			required: []string{"a"},
			want:     "kernel module zz (needed by b) is neither in",
		},
		{
			name:     "missing dependency of an optional module",
			modules:  map[string][]string{"a.ko": {"zz"}},
			optional: []string{"a"},
			want:     "kernel module zz (needed by a)",
		},
		{
			name:     "missing required",
			modules:  map[string][]string{"a.ko": nil},
			required: []string{"virtio_pci"},
			want:     "kernel module virtio_pci (requested) is neither in",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for file, deps := range tt.modules {
				writeModule(t, dir, "kernel/"+file, deps...)
			}
			_, err := ResolveModules(testContext(t), dir, tt.required, tt.optional)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ResolveModules error = %v, want one containing %q", err, tt.want)
			}
		})
	}

	t.Run("not an ELF object", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "kernel", "a.ko"), []byte("garbage"), 0o644)
		if _, err := ResolveModules(testContext(t), dir, []string{"a"}, nil); err == nil || !strings.Contains(err.Error(), "kernel/a.ko: not an ELF object") {
			t.Fatalf("error = %v", err)
		}
	})
	t.Run("no modinfo", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "kernel", "a.ko"), testELF{typ: elf.ET_REL, sections: map[string][]byte{".text": {0}}}.bytes(t), 0o644)
		if _, err := ResolveModules(testContext(t), dir, []string{"a"}, nil); err == nil || !strings.Contains(err.Error(), "no .modinfo section") {
			t.Fatalf("error = %v", err)
		}
	})
	t.Run("zstd", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "kernel", "a.ko.zst"), []byte("x"), 0o644)
		if _, err := ResolveModules(testContext(t), dir, []string{"a"}, nil); err == nil || !strings.Contains(err.Error(), "unsupported compression") {
			t.Fatalf("error = %v", err)
		}
	})
}

// TestResolveRealModules resolves the guest modules of an installed Debian kernel, if any.
func TestResolveRealModules(t *testing.T) {
	dk, err := FindDebianKernel("/")
	if err != nil {
		t.Skipf("no Debian kernel installed: %v", err)
	}
	required, optional := GuestModules()
	set, err := ResolveModules(testContext(t), dk.ModulesDir, required, optional)
	if err != nil {
		t.Fatalf("ResolveModules(%s): %v", dk.ModulesDir, err)
	}
	assertDepsFirst(t, set)
	t.Logf("%s: %d modules, built in %v, missing %v", dk.Release, len(set.Modules), set.Builtin, set.Missing)
}

func TestModuleName(t *testing.T) {
	for in, want := range map[string]string{
		"kernel/fs/9p/9p.ko.xz":      "9p",
		"virtio-rng.ko":              "virtio_rng",
		"vmw_vsock_virtio_transport": "vmw_vsock_virtio_transport",
		"a/b/sd_mod.ko.gz":           "sd_mod",
	} {
		if got := moduleName(in); got != want {
			t.Errorf("moduleName(%q) = %q, want %q", in, got, want)
		}
	}
}
