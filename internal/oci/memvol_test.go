package oci

import (
	"context"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/vessel-containers/vessel/internal/config"
)

func TestMemoryVolumes(t *testing.T) {
	emptyDir := "/tmpfs/var/lib/kubelet/pods/uid-1/volumes/kubernetes.io~empty-dir/cache"
	hugeDir := "/huge/var/lib/kubelet/pods/uid-1/volumes/kubernetes.io~empty-dir/hp"
	spec := minimalSpec()
	spec.Mounts = []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc"},
		{Destination: "/dev/shm", Type: "bind", Source: "/tmpfs/sandboxes/s1/shm", Options: []string{"rbind", "ro", "nosuid"}},
		{Destination: "/cache", Type: "bind", Source: emptyDir, Options: []string{"rbind"}},
		{Destination: "/other-tmpfs", Type: "bind", Source: "/tmpfs/run/secrets", Options: []string{"rbind"}},
		{Destination: "/disk-emptydir", Type: "bind", Source: "/var/lib/kubelet/pods/uid-1/volumes/kubernetes.io~empty-dir/d", Options: []string{"rbind"}},
		{Destination: "/hugepages", Type: "bind", Source: hugeDir, Options: []string{"rbind"}},
		{Destination: "/hp1g", Type: "hugetlbfs", Source: "none", Options: []string{"pagesize=1G", "nosuid"}},
	}
	spec.Linux = &specs.Linux{Resources: &specs.LinuxResources{HugepageLimits: []specs.LinuxHugepageLimit{
		{Pagesize: "2MB", Limit: 5 << 20}, {Pagesize: "1GB", Limit: 1 << 30},
	}}}
	c, err := ContainerConfig(context.Background(), "c1", bundle, spec, opts)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range c.MemoryVolumes {
		got = append(got, string(v.Kind)+" "+c.Mounts[v.Index].Destination)
	}
	want := []string{"shm /dev/shm", "emptydir /cache", "hugepages /hugepages", "hugepages /hp1g"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("memory volumes = %v, want %v", got, want)
	}
	shm, emptyVol, huge, huge1g := c.MemoryVolumes[0], c.MemoryVolumes[1], c.MemoryVolumes[2], c.MemoryVolumes[3]
	if shm.SizeBytes != 64<<20 || shm.Mode != 0o1777 || shm.GID != 5 || !strings.HasPrefix(shm.GuestPath, GuestMemoryDir+"/shm-") {
		t.Errorf("shm volume = %+v", shm)
	}
	if emptyVol.SizeBytes != 64<<20 || emptyVol.Source != emptyDir {
		t.Errorf("emptyDir volume = %+v", emptyVol)
	}
	if huge.PageSize != 2<<20 || huge.SizeBytes != 4<<20 {
		t.Errorf("hugepages volume = %+v, want 2 MiB pages, 4 MiB (the 5 MiB limit in whole pages)", huge)
	}
	if huge1g.PageSize != 1<<30 || huge1g.SizeBytes != 1<<30 || huge1g.Source != "" {
		t.Errorf("1 GiB hugetlbfs volume = %+v", huge1g)
	}
	if c.Resources.HugePageBytes != 5<<20+1<<30 {
		t.Errorf("hugepage bytes for sizing = %d", c.Resources.HugePageBytes)
	}

	// Another container binding the same shm shares its guest path; its huge pages do not.
	c2, err := ContainerConfig(context.Background(), "c2", bundle, spec, opts)
	if err != nil {
		t.Fatal(err)
	}
	if c2.MemoryVolumes[0].GuestPath != shm.GuestPath || c2.MemoryVolumes[2].GuestPath == huge.GuestPath {
		t.Errorf("c2 shm %s (c1 %s), hugepages %s (c1 %s): want the shm shared, the huge pages not",
			c2.MemoryVolumes[0].GuestPath, shm.GuestPath, c2.MemoryVolumes[2].GuestPath, huge.GuestPath)
	}

	g, err := GuestSpec(c, &config.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if m := g.Mounts[1]; m.Type != "bind" || m.Source != shm.GuestPath || strings.Join(m.Options, ",") != "rbind,ro,nosuid" {
		t.Errorf("guest /dev/shm = %+v", m)
	}
	if m := g.Mounts[6]; m.Type != "bind" || m.Source != huge1g.GuestPath || strings.Join(m.Options, ",") != "rbind,nosuid" {
		t.Errorf("guest /hp1g = %+v", m)
	}
	if m := g.Mounts[3]; m.Source != "/tmpfs/run/secrets" {
		t.Errorf("a tmpfs bind that is neither /dev/shm nor an emptyDir changed: %+v", m)
	}
}

func TestMemoryVolumesRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mount  specs.Mount
		limits []specs.LinuxHugepageLimit
		want   string
	}{
		{"no limit", specs.Mount{Destination: "/hp", Type: "bind", Source: "/huge/x", Options: []string{"rbind"}}, nil, "no hugepage limit for page size 2MB"},
		{"limit of another size", specs.Mount{Destination: "/hp", Type: "hugetlbfs", Source: "none"}, []specs.LinuxHugepageLimit{{Pagesize: "1GB", Limit: 1 << 30}}, "no hugepage limit for page size 2MB"},
		{"limit under a page", specs.Mount{Destination: "/hp", Type: "hugetlbfs", Source: "none"}, []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 1 << 20}}, "less than one page"},
		{"bad page size", specs.Mount{Destination: "/hp", Type: "hugetlbfs", Source: "none", Options: []string{"pagesize=big"}}, nil, "not a page size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := minimalSpec()
			spec.Mounts = []specs.Mount{tc.mount}
			spec.Linux = &specs.Linux{Resources: &specs.LinuxResources{HugepageLimits: tc.limits}}
			_, err := ContainerConfig(context.Background(), "c1", bundle, spec, opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}
