package sandbox

import (
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/vessel-containers/vessel/internal/config"
	"github.com/vessel-containers/vessel/internal/sharefs/copyfs"
)

func TestCopyBudget(t *testing.T) {
	cfg := config.Default()
	cp := newCopies(cfg, 256) // half of 256 MiB less the reserve: 112 MiB
	if want := int64(128-copyReserveMiB) << 20; cp.budget != want {
		t.Fatalf("budget %d, want %d", cp.budget, want)
	}
	if cp.mode != copyfs.SyncAll {
		t.Fatalf("default sync mode %q, want all", cp.mode)
	}
	item := func(what string, mib int64) copyItem {
		return copyItem{what: what, tree: &copyfs.Tree{Bytes: mib << 20}}
	}
	if err := cp.reserve("c1", []copyItem{item("root file system /r1", 10), item("volume /v1 (mount /data)", 50)}); err != nil {
		t.Fatal(err)
	}
	err := cp.reserve("c2", []copyItem{item("root file system /r2", 10), item("volume /big (mount /big)", 60)})
	if !errdefs.IsInvalidArgument(err) {
		t.Fatalf("over budget: %v, want invalid argument", err)
	}
	for _, want := range []string{"volume /big (mount /big) takes 60.0 MiB", "only 42.0 MiB of the 112.0 MiB", "(70.0 MiB in use)", "shared_fs", "default_memory"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q does not say %q", err, want)
		}
	}
	if got := cp.usedBy("c2"); got != 0 {
		t.Fatalf("a refused container holds %d bytes", got)
	}
	// What fits after the first container is gone.
	delete(cp.used, "c1")
	if err := cp.reserve("c2", []copyItem{item("root file system /r2", 10), item("volume /big (mount /big)", 60)}); err != nil {
		t.Fatal(err)
	}
	cfg.Hypervisor.CopySync = "kubernetes"
	if got := newCopies(cfg, 0); got.mode != copyfs.SyncKubernetes || got.budget != int64(config.DefaultMemoryMiB/2-copyReserveMiB)<<20 {
		t.Fatalf("copies %+v", got)
	}
}

func TestCopyStorage(t *testing.T) {
	st := copyStorage(newCopies(config.Default(), 512))
	if st.GetDriver() != "ephemeral" || st.GetMountPoint() != copyfs.GuestRoot {
		t.Fatalf("storage %v", st)
	}
	if got := st.GetOptions(); !strings.Contains(strings.Join(got, ","), "size=245760k") {
		t.Fatalf("options %v, want size=245760k (240 MiB)", got)
	}
}
