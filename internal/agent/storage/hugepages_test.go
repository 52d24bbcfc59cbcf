//go:build linux

package storage

import (
	"context"
	"os"
	"syscall"
	"testing"

	"github.com/containerd/errdefs"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
)

// fakePool is a guest's pool of 2 MiB huge pages that holds at most max pages.
type fakePool struct {
	n, max uint64
	writes []uint64
}

func (p *fakePool) install(m *Manager) {
	m.hugePages = func(kb uint64) (uint64, error) {
		if kb != 2048 {
			return 0, errdefs.ErrNotImplemented
		}
		return p.n, nil
	}
	m.setHugePages = func(_, n uint64) error {
		p.writes = append(p.writes, n)
		p.n = min(n, p.max)
		return nil
	}
}

// TestHugetlbfsStorage reserves the pages before mounting, shares one mount between two
// users and gives the pages back after the last unmount.
func TestHugetlbfsStorage(t *testing.T) {
	ctx := context.Background()
	m, mounts, unmounts := newTestManager(t)
	pool := &fakePool{n: 1, max: 100}
	pool.install(m)
	st := &agentv1.Storage{Driver: "hugetlbfs", Source: "vessel-hugepages", Fstype: "hugetlbfs",
		Options: []string{"nodev", "pagesize=2048k", "size=16777216"}, MountPoint: m.root + "/memory/h"}
	for i := 0; i < 2; i++ {
		if _, err := m.Mount(ctx, st); err != nil {
			t.Fatalf("mount %d: %v", i, err)
		}
	}
	if pool.n != 9 || len(pool.writes) != 1 {
		t.Fatalf("pool = %d pages after writes %v, want 1+8 written once", pool.n, pool.writes)
	}
	want := call{"none", m.root + "/memory/h", "hugetlbfs", 0x4, "pagesize=2048k,size=16777216"}
	if len(*mounts) != 1 || (*mounts)[0] != want {
		t.Fatalf("mounts = %+v, want one %+v", *mounts, want)
	}
	if err := m.Unmount(ctx, m.root+"/memory/h"); err != nil || pool.n != 9 {
		t.Fatalf("first unmount: %v, pool %d (want 9: one user left)", err, pool.n)
	}
	if err := m.Unmount(ctx, m.root+"/memory/h"); err != nil || pool.n != 1 || len(*unmounts) != 1 {
		t.Fatalf("last unmount: %v, pool %d (want 1), unmounts %v", err, pool.n, *unmounts)
	}
}

func TestHugetlbfsStorageRefused(t *testing.T) {
	ctx := context.Background()
	m, mounts, _ := newTestManager(t)
	pool := &fakePool{n: 0, max: 3}
	pool.install(m)
	for _, tc := range []struct {
		name  string
		opts  []string
		check func(error) bool
	}{
		{"no pagesize", []string{"size=4M"}, errdefs.IsInvalidArgument},
		{"no size", []string{"pagesize=2M"}, errdefs.IsInvalidArgument},
		{"partial page", []string{"pagesize=2M", "size=3M"}, errdefs.IsInvalidArgument},
		{"bad size", []string{"pagesize=2M", "size=lots"}, errdefs.IsInvalidArgument},
		{"foreign option", []string{"pagesize=2M", "size=2M", "min_size=2M"}, errdefs.IsInvalidArgument},
		{"page size the guest lacks", []string{"pagesize=1G", "size=1G"}, errdefs.IsNotImplemented},
		{"more pages than the guest has", []string{"pagesize=2M", "size=8M"}, errdefs.IsResourceExhausted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := m.Mount(ctx, &agentv1.Storage{Driver: "hugetlbfs", Options: tc.opts, MountPoint: m.root + "/memory/x"})
			if !tc.check(err) {
				t.Fatalf("err = %v", err)
			}
		})
	}
	if len(*mounts) != 0 || pool.n != 0 {
		t.Fatalf("refused storages left mounts %+v and %d pages", *mounts, pool.n)
	}
}

func TestLocalStorageOwner(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("chown needs root")
	}
	ctx := context.Background()
	m, _, _ := newTestManager(t)
	if _, err := m.Mount(ctx, &agentv1.Storage{Driver: "local", Options: []string{"mode=2770", "uid=1000", "gid=2000"}, MountPoint: m.root + "/local/o"}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(m.root + "/local/o")
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != 1000 || st.Gid != 2000 || fi.Mode().Perm() != 0o770 || fi.Mode()&os.ModeSetgid == 0 {
		t.Fatalf("local dir: owner %d:%d mode %v, want 1000:2000 and setgid 0770", st.Uid, st.Gid, fi.Mode())
	}
	for _, opts := range [][]string{{"uid=x"}, {"gid=-1"}, {"owner=1"}} {
		if _, err := m.Mount(ctx, &agentv1.Storage{Driver: "local", Options: opts, MountPoint: m.root + "/local/bad"}); !errdefs.IsInvalidArgument(err) {
			t.Errorf("local storage with %v: %v, want invalid argument", opts, err)
		}
	}
}
