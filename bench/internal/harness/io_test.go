package harness

import (
	"slices"
	"testing"

	"github.com/vessel-containers/vessel/internal/config"
	"github.com/vessel-containers/vessel/internal/hypervisor"
)

// TestIOVariants checks that each Vessel variant's configuration file, read back as the
// shim reads it, has the shared file system and cache mode its name says, and that the
// block variant alone mounts a disk.
func TestIOVariants(t *testing.T) {
	cfg, err := loadConfig("", "")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{cfg: cfg, work: t.TempDir()}
	vs, err := e.ioVariants()
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		name  string
		fs    hypervisor.SharedFS
		cache string
		block bool
	}{
		{"runc", "", "", false},
		{"vessel-9p", hypervisor.SharedFS9P, "", false},
		{"vessel-virtio-fs-never", hypervisor.SharedFSVirtioFS, "never", false},
		{"vessel-virtio-fs-auto", hypervisor.SharedFSVirtioFS, "auto", false},
		{"vessel-virtio-fs-always", hypervisor.SharedFSVirtioFS, "always", false},
		{"vessel-block", hypervisor.SharedFS9P, "", true},
	}
	if len(vs) != len(want) {
		t.Fatalf("got %d variants, want %d", len(vs), len(want))
	}
	for i, w := range want {
		v := vs[i]
		if v.name != w.name || v.block != w.block || v.rt.name != w.name {
			t.Errorf("variant %d: got %+v, want %s (block %v)", i, v, w.name, w.block)
		}
		if w.fs == "" {
			if v.rt.typ != RuncRuntime {
				t.Errorf("%s: runtime %s", v.name, v.rt.typ)
			}
			continue
		}
		got, _, err := config.LoadFrom(v.rt.config, nil, "")
		if err != nil {
			t.Fatalf("%s: %v", v.name, err)
		}
		if got.Hypervisor.SharedFS != w.fs || (w.cache != "" && got.Hypervisor.VirtioFSCache != w.cache) {
			t.Errorf("%s: shared_fs %s cache %s", v.name, got.Hypervisor.SharedFS, got.Hypervisor.VirtioFSCache)
		}
	}
}

func TestWorkloadArgs(t *testing.T) {
	e := &env{opts: QuickOptions()}
	got := e.workloadArgs("/data")
	want := []string{"/vbio/vesselio", "-dir", "/data", "-files", "100", "-size", "4", "-rand", "1s"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if blockImageMiB(4) != 128 || blockImageMiB(256) != 576 {
		t.Errorf("block image sizes %d, %d", blockImageMiB(4), blockImageMiB(256))
	}
}
