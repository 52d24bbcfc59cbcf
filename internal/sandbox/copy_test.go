package sandbox

import (
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/vessel-containers/vessel/internal/config"
	"github.com/vessel-containers/vessel/internal/sharefs/copyfs"
)

// TestCopyBudget reserves containers' copies against the budget: a volume two containers
// mount is counted once and stays until its last user goes; a container that does not fit
// is refused whole, naming the tree that does not fit.
func TestCopyBudget(t *testing.T) {
	cfg := config.Default()
	cp := newCopies(cfg, 256) // half of 256 MiB less the reserve: 112 MiB
	if want := int64(128-copyReserveMiB) << 20; cp.budget != want {
		t.Fatalf("budget %d, want %d", cp.budget, want)
	}
	if cp.mode != copyfs.SyncAll {
		t.Fatalf("default sync mode %q, want all", cp.mode)
	}
	rootfs := func(mib int64) *copyItem {
		return &copyItem{what: "root file system", rootfs: true, tree: &copyfs.Tree{Bytes: mib << 20}}
	}
	vol := func(src string, mib int64) *copyItem {
		return &copyItem{what: "volume " + src + " (mount /m)", tree: &copyfs.Tree{Root: src, Dir: true, Bytes: mib << 20}}
	}
	fresh, err := cp.reserve("c1", []*copyItem{rootfs(10), vol("/shared", 50)})
	if err != nil || len(fresh) != 2 {
		t.Fatalf("c1: %d to copy, %v", len(fresh), err)
	}
	shared := cp.volumes["/shared"].guest
	// The shared volume is not copied again, nor counted again.
	c2 := []*copyItem{rootfs(10), vol("/shared", 50), vol("/own", 20)}
	fresh, err = cp.reserve("c2", c2)
	if err != nil || len(fresh) != 2 || c2[1].guest != shared || !c2[1].copied || c2[2].guest == shared {
		t.Fatalf("c2: %d to copy, %+v, %v", len(fresh), c2, err)
	}
	if got := cp.used(); got != 90<<20 {
		t.Fatalf("used %d, want 90 MiB", got)
	}
	_, err = cp.reserve("c3", []*copyItem{rootfs(10), vol("/big", 20)})
	if !errdefs.IsInvalidArgument(err) {
		t.Fatalf("over budget: %v, want invalid argument", err)
	}
	for _, want := range []string{"volume /big (mount /m) takes 20.0 MiB", "only 12.0 MiB of the 112.0 MiB", "(100.0 MiB in use)", "shared_fs", "default_memory"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q does not say %q", err, want)
		}
	}
	if got := cp.used(); got != 90<<20 {
		t.Fatalf("a refused container changed the use: %d", got)
	}
	// c1 goes: its rootfs goes, the shared volume stays for c2.
	if rootfs, gone := cp.release("c1"); !rootfs || len(gone) != 0 {
		t.Fatalf("release c1: rootfs %v, gone %d", rootfs, len(gone))
	}
	// c2 goes: the shared volume and its own go with it.
	if rootfs, gone := cp.release("c2"); !rootfs || len(gone) != 2 {
		t.Fatalf("release c2: rootfs %v, gone %d", rootfs, len(gone))
	}
	if got := cp.used(); got != 0 {
		t.Fatalf("used %d after every container went", got)
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
