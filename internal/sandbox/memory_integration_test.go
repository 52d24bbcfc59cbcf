package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/vessel-containers/vessel/internal/sharefs/copyfs"
)

// hostTmpfs mounts a tmpfs of sizeMiB at dir (made with its parents) on the host, as
// containerd mounts a sandbox's shm and kubelet a memory-backed emptyDir, and unmounts it
// at cleanup.
func hostTmpfs(t *testing.T, dir string, sizeMiB int) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, fmt.Sprintf("size=%dm,mode=1777", sizeMiB)); err != nil {
		t.Fatalf("mount a tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
}

// hostHugetlbfs mounts a hugetlbfs of 2 MiB pages at dir (made with its parents) on the
// host, as kubelet mounts an emptyDir of medium HugePages, and unmounts it at cleanup.
func hostHugetlbfs(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("nodev", dir, "hugetlbfs", 0, "pagesize=2M"); err != nil {
		t.Fatalf("mount a hugetlbfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
}

// withMemoryVolumes binds /dev/shm from shm and /cache from emptyDir and, when hugeMiB is
// not zero, mounts a hugetlbfs of 2 MiB pages at /hp with a hugepage limit of hugeMiB and,
// when hugeDir is set, binds /hp-kube from it (a host hugetlbfs).
func withMemoryVolumes(shm, emptyDir, hugeDir string, hugeMiB uint64) func(*specs.Spec) {
	return func(s *specs.Spec) {
		mounts := s.Mounts[:0]
		for _, m := range s.Mounts {
			if m.Destination != "/dev/shm" {
				mounts = append(mounts, m)
			}
		}
		s.Mounts = append(mounts,
			specs.Mount{Destination: "/dev/shm", Type: "bind", Source: shm, Options: []string{"rbind", "nosuid", "nodev", "noexec"}},
			specs.Mount{Destination: "/cache", Type: "bind", Source: emptyDir, Options: []string{"rbind"}})
		if hugeMiB > 0 {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/hp", Type: "hugetlbfs", Source: "none", Options: []string{"pagesize=2M", "nosuid", "nodev"}})
			s.Linux.Resources.HugepageLimits = []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: hugeMiB << 20}}
		}
		if hugeDir != "" {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/hp-kube", Type: "bind", Source: hugeDir, Options: []string{"rbind"}})
		}
	}
}

// guestMemoryMounts lists the guest's own mounts of memory volumes (the agent's mount
// namespace, seen by a privileged container in the guest's pid namespace) and the size
// of its pool of 2 MiB huge pages.
func (e *env) guestMemoryMounts(id string) (mounts []string, hugePages string) {
	e.t.Helper()
	c := e.container(id, []string{"sh", "-c", "grep ' /run/vessel/memory/' /proc/1/mounts | cut -d' ' -f2,3; echo pages=$(cat /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages)"}, privilegedNoPidNS)
	code, out, errs := e.run(c, nil)
	e.deleteContainer(id)
	if code != 0 {
		e.t.Fatalf("list the guest's mounts: exit %d, %s%s", code, out, errs)
	}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if p, ok := strings.CutPrefix(l, "pages="); ok {
			hugePages = p
		} else if l != "" {
			mounts = append(mounts, l)
		}
	}
	return mounts, hugePages
}

// TestMemoryVolumes runs two containers of a pod that bind one host tmpfs as /dev/shm (as
// containerd's CRI gives every container of a pod the sandbox's shm) and one memory-backed
// emptyDir, the first also with two hugetlbfs volumes (a hugetlbfs mount in the spec and a
// kubelet-style bind of a host hugetlbfs) under a 2 MiB-page limit of 8 MiB. Inside the containers the volumes are
// the guest's own tmpfs and hugetlbfs of the host's sizes and of the hugepage limit; a file
// one container writes to /dev/shm the other reads, and it never reaches the host; the
// guest's mounts go with their last user, and the huge pages back to the pool. In every
// shared-fs mode, copy mode included.
func TestMemoryVolumes(t *testing.T) {
	for _, mode := range []string{"shared", "copy"} {
		t.Run(mode, func(t *testing.T) {
			host := t.TempDir()
			shm := filepath.Join(host, "sandboxes", "sb", "shm")
			emptyDir := filepath.Join(host, "pods", "0d7c4d52-uid", "volumes", "kubernetes.io~empty-dir", "cache")
			hostTmpfs(t, shm, 12)
			hostTmpfs(t, emptyDir, 20)
			hugeDir := filepath.Join(host, "pods", "0d7c4d52-uid", "volumes", "kubernetes.io~empty-dir", "hugepages")
			hostHugetlbfs(t, hugeDir)
			var e *env
			if mode == "copy" {
				e = newCopyEnv(t, copyfs.SyncAll)
			} else {
				e = newEnv(t)
			}

			writer := e.container("writer", []string{"sh", "-c", `df -k /dev/shm /cache /hp /hp-kube | tail -n +2 | awk '{print $6, $2}'
grep -E ' /(dev/shm|cache|hp|hp-kube) ' /proc/self/mounts | cut -d' ' -f2,3
grep -o 'pagesize=[^, ]*' /proc/self/mounts
echo from-writer > /dev/shm/f && echo cached > /cache/g`}, withMemoryVolumes(shm, emptyDir, hugeDir, 8))
			code, out, errs := e.run(writer, nil)
			want := "/dev/shm 12288\n/cache 20480\n/hp 8192\n/hp-kube 8192\n/dev/shm tmpfs\n/cache tmpfs\n/hp hugetlbfs\n/hp-kube hugetlbfs\npagesize=2M\npagesize=2M\n"
			if code != 0 || out != want {
				t.Fatalf("writer: exit %d, stdout %q, stderr %q; want 0 and %q", code, out, errs, want)
			}
			mounts, pages := e.guestMemoryMounts("look1")
			if len(mounts) != 4 || pages != "8" {
				t.Fatalf("guest with the writer: memory mounts %q, %s huge pages; want 4 (shm, emptyDir, two hugetlbfs) and 8 pages (4 each)", mounts, pages)
			}

			reader := e.container("reader", []string{"sh", "-c", "cat /dev/shm/f /cache/g; df -k /dev/shm | tail -n 1 | awk '{print $2}'"}, withMemoryVolumes(shm, emptyDir, "", 0))
			code, out, errs = e.run(reader, nil)
			if want := "from-writer\ncached\n12288\n"; code != 0 || out != want {
				t.Fatalf("reader: exit %d, stdout %q, stderr %q; want 0 and %q", code, out, errs, want)
			}
			for _, dir := range []string{shm, emptyDir} {
				if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
					t.Errorf("host %s holds %v (%v): the guest's writes reached the host", dir, entries, err)
				}
			}

			e.deleteContainer("writer")
			mounts, pages = e.guestMemoryMounts("look2")
			if len(mounts) != 2 || pages != "0" {
				t.Fatalf("guest after the writer went: memory mounts %q, %s huge pages; want shm and emptyDir (the reader holds them) and 0 pages", mounts, pages)
			}
			e.deleteContainer("reader")
			if mounts, _ = e.guestMemoryMounts("look3"); len(mounts) != 0 {
				t.Fatalf("guest after the last user went: memory mounts %q left", mounts)
			}
		})
	}
}

// TestHugePagesRefused asks for more huge pages than the guest can ever have: the
// container is refused, naming the shortfall, and the pool is left as it was.
func TestHugePagesRefused(t *testing.T) {
	host := t.TempDir()
	shm := filepath.Join(host, "shm")
	emptyDir := filepath.Join(host, "pods", "u", "volumes", "kubernetes.io~empty-dir", "e")
	hostTmpfs(t, shm, 4)
	hostTmpfs(t, emptyDir, 4)
	e := newEnv(t)
	_, err := e.tryContainer("greedy", []string{"true"}, withMemoryVolumes(shm, emptyDir, "", 4096))
	if err == nil || !strings.Contains(err.Error(), "huge pages the volume needs") {
		t.Fatalf("4 GiB of huge pages in a VM of at most 512 MiB: %v, want a refusal naming the huge pages", err)
	}
	if mounts, pages := e.guestMemoryMounts("look"); len(mounts) != 0 || pages != "0" {
		t.Fatalf("after the refusal: memory mounts %q, %s huge pages; want none", mounts, pages)
	}
}
