package factory

import (
	"io/fs"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vessel-containers/vessel/internal/hypervisor"
)

// fakeInfo is a file identity for KeyOf's stat.
type fakeInfo struct {
	fs.FileInfo
	size  int64
	mtime time.Time
}

func (f fakeInfo) Size() int64        { return f.size }
func (f fakeInfo) ModTime() time.Time { return f.mtime }

func statOf(files map[string]fakeInfo) func(string) (os.FileInfo, error) {
	return func(p string) (os.FileInfo, error) {
		if fi, ok := files[p]; ok {
			return fi, nil
		}
		return nil, fs.ErrNotExist
	}
}

func baseConfig() hypervisor.Config {
	return hypervisor.Config{
		Path: "/usr/bin/qemu", Kernel: "/guest/vmlinux", Initrd: "/guest/initramfs.img",
		KernelParams: []string{"quiet"}, Accelerator: hypervisor.AccelAuto, MachineType: "q35",
		SharedFS: hypervisor.SharedFS9P, ShareTag: "vessel-shared", TBSizeMiB: 64,
		VCPUs: 1, MaxVCPUs: 2, MemoryMiB: 256, MaxMemoryMiB: 1024, MemorySlots: 4,
	}
}

func TestKeyMatching(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	files := map[string]fakeInfo{
		"/usr/bin/qemu":        {size: 100, mtime: t0},
		"/guest/vmlinux":       {size: 200, mtime: t0},
		"/guest/initramfs.img": {size: 300, mtime: t0},
	}
	stat := statOf(files)
	base := KeyOf("qemu", baseConfig(), stat)
	if base.Hash() != KeyOf("qemu", baseConfig(), stat).Hash() {
		t.Fatal("hash is not stable")
	}

	for _, tc := range []struct {
		name  string
		edit  func(*hypervisor.Config)
		files map[string]fakeInfo
		diff  string // "" when the key must match
	}{
		{"identity and size do not count", func(c *hypervisor.Config) {
			c.ID, c.StateDir, c.SharedDir = "other", "/run/x", "/run/x/shared"
			c.VCPUs, c.MaxVCPUs, c.MemoryMiB, c.MaxMemoryMiB, c.MemorySlots = 2, 2, 512, 512, 1
			c.Handover, c.Msize9P = true, 8192
		}, nil, ""},
		{"kernel params", func(c *hypervisor.Config) { c.KernelParams = []string{"quiet", "debug"} }, nil, "kernel_params"},
		{"kernel path", func(c *hypervisor.Config) { c.Kernel = "/other/vmlinux" }, nil, "kernel, kernel.file"},
		{"machine", func(c *hypervisor.Config) { c.MachineType = "pc" }, nil, "machine_type"},
		{"shared fs", func(c *hypervisor.Config) { c.SharedFS = hypervisor.SharedFSVirtioFS }, nil, "shared_fs"},
		{"no shared fs is none", func(c *hypervisor.Config) { c.SharedFS = "" }, nil, "shared_fs"},
		{"debug", func(c *hypervisor.Config) { c.Debug = true }, nil, "debug"},
		{"tb size", func(c *hypervisor.Config) { c.TBSizeMiB = 32 }, nil, "tb_size_mib"},
		{"accelerator", func(c *hypervisor.Config) { c.Accelerator = hypervisor.AccelTCG }, nil, "accelerator"},
		{"machine options", func(c *hypervisor.Config) { c.MachineAccelerators = "smm=off" }, nil, "machine_accelerators"},
		{"cpu features", func(c *hypervisor.Config) { c.CPUFeatures = "pmu=off" }, nil, "cpu_features"},
		{"preallocation", func(c *hypervisor.Config) { c.MemPrealloc = true }, nil, "mem_prealloc"},
		{"entropy", func(c *hypervisor.Config) { c.EntropySource = "/dev/random" }, nil, "entropy_source"},
		{"block settings", func(c *hypervisor.Config) { c.Block.CacheDirect = true }, nil, "block"},
		{"rebuilt initrd", nil, map[string]fakeInfo{"/guest/initramfs.img": {size: 300, mtime: t0.Add(time.Second)}}, "initrd.file"},
		{"upgraded qemu", nil, map[string]fakeInfo{"/usr/bin/qemu": {size: 101, mtime: t0}}, "path.file"},
		{"missing kernel", nil, map[string]fakeInfo{"/guest/vmlinux": {}}, "kernel.file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig()
			if tc.edit != nil {
				tc.edit(&cfg)
			}
			fs := map[string]fakeInfo{}
			for k, v := range files {
				fs[k] = v
			}
			for k, v := range tc.files {
				if v.size == 0 {
					delete(fs, k)
					continue
				}
				fs[k] = v
			}
			got := KeyOf("qemu", cfg, statOf(fs))
			if match := got.Hash() == base.Hash(); match != (tc.diff == "") {
				t.Errorf("hash match: got %v, want %v", match, tc.diff == "")
			}
			if d := strings.Join(got.Diff(base), ", "); d != tc.diff {
				t.Errorf("diff: got %q, want %q", d, tc.diff)
			}
		})
	}
	if d := KeyOf("qemu", baseConfig(), stat).Diff(base[:3]); len(d) != len(base)-3 {
		t.Errorf("diff against a shorter key names %v", d)
	}
}

func TestShapeFits(t *testing.T) {
	s := ShapeOf(baseConfig())
	for _, tc := range []struct {
		vcpus, mem uint32
		want       string // "" fits
	}{
		{1, 256, ""},
		{2, 1024, ""},
		{2, 300, ""},
		{3, 256, "can grow to 2"},
		{1, 2048, "can grow to 1024 MiB"},
		{1, 128, "less than the 256 MiB"},
	} {
		err := s.Fits(tc.vcpus, tc.mem)
		if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("Fits(%d, %d): got %v, want %q", tc.vcpus, tc.mem, err, tc.want)
		}
	}
	fixed := Shape{VCPUs: 1, MaxVCPUs: 1, MemoryMiB: 256, MaxMemoryMiB: 256}
	if err := fixed.Fits(1, 512); err == nil {
		t.Error("a vm without memory headroom fits a bigger sandbox")
	}
	if err := (Shape{VCPUs: 2, MaxVCPUs: 2, MemoryMiB: 256, MaxMemoryMiB: 512}).Fits(1, 256); err == nil {
		t.Error("a vm with more vcpus than the sandbox wants fits it")
	}
}
