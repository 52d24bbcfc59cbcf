package sandbox

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/vessel-containers/vessel/internal/bundle"
	"github.com/vessel-containers/vessel/internal/hypervisor"
)

func TestValidateID(t *testing.T) {
	for _, tc := range []struct {
		id string
		ok bool
	}{
		{"abc", true}, {"a.b-c_d+e", true}, {strings.Repeat("x", 128), true},
		{"", false}, {".", false}, {"..", false}, {"a/b", false}, {"a b", false}, {strings.Repeat("x", 129), false},
	} {
		err := ValidateID(tc.id)
		if got := err == nil; got != tc.ok {
			t.Errorf("ValidateID(%q): got ok=%v, want %v (err %v)", tc.id, got, tc.ok, err)
		}
		if err != nil && !errdefs.IsInvalidArgument(err) {
			t.Errorf("ValidateID(%q): got %v, want an invalid-argument error", tc.id, err)
		}
	}
}

func TestGuestSpecDropsHostOnlyParts(t *testing.T) {
	in := bundle.DefaultSpec([]string{"true"}, false)
	in.Hooks = &specs.Hooks{Poststop: []specs.Hook{{Path: "/bin/true"}}}
	in.Linux.CgroupsPath = "/host/path"
	for i, ns := range in.Linux.Namespaces {
		switch ns.Type {
		case specs.NetworkNamespace:
			in.Linux.Namespaces[i].Path = "/var/run/netns/cni-1234"
		case specs.PIDNamespace:
			in.Linux.Namespaces[i].Path = "/proc/42/ns/pid"
		}
	}
	got, err := guestSpec(in)
	if err != nil {
		t.Fatal(err)
	}
	if got.Hooks != nil || got.Linux.CgroupsPath != "" {
		t.Errorf("guest spec kept host-only fields: hooks %v cgroupsPath %q", got.Hooks, got.Linux.CgroupsPath)
	}
	// The pod's containers share the guest's network namespace; the others stay, without
	// their host paths.
	var types []specs.LinuxNamespaceType
	for _, ns := range got.Linux.Namespaces {
		if ns.Path != "" {
			t.Errorf("namespace %s kept host path %q", ns.Type, ns.Path)
		}
		types = append(types, ns.Type)
	}
	want := []specs.LinuxNamespaceType{specs.PIDNamespace, specs.IPCNamespace, specs.UTSNamespace, specs.MountNamespace, specs.CgroupNamespace}
	if !slices.Equal(types, want) {
		t.Errorf("guest namespaces %v, want %v", types, want)
	}
	if in.Hooks == nil || in.Linux.CgroupsPath != "/host/path" || len(in.Linux.Namespaces) != 6 || in.Linux.Namespaces[1].Path == "" {
		t.Error("guestSpec modified its input")
	}
	got.Process.Args[0] = "changed"
	if in.Process.Args[0] != "true" {
		t.Error("guest spec shares memory with its input")
	}
}

func TestIsBind(t *testing.T) {
	for _, tc := range []struct {
		m    specs.Mount
		want bool
	}{
		{specs.Mount{Type: "bind"}, true},
		{specs.Mount{Type: "none", Options: []string{"rbind", "ro"}}, true},
		{specs.Mount{Type: "tmpfs", Options: []string{"nosuid"}}, false},
		{specs.Mount{Type: "proc"}, false},
	} {
		if got := isBind(tc.m); got != tc.want {
			t.Errorf("isBind(%+v): got %v, want %v", tc.m, got, tc.want)
		}
	}
}

func TestShareStorage(t *testing.T) {
	s := shareStorage(hypervisor.Config{SharedFS: hypervisor.SharedFS9P, Msize9P: 8192})
	if s.Driver != "9p" || s.Source != "vessel-shared" || !strings.Contains(strings.Join(s.Options, ","), "msize=8192") {
		t.Errorf("9p storage: got %+v", s)
	}
	s = shareStorage(hypervisor.Config{SharedFS: hypervisor.SharedFSVirtioFS})
	if s.Driver != "virtiofs" || s.Fstype != "virtiofs" {
		t.Errorf("virtio-fs storage: got %+v", s)
	}
}

func TestMetricSeconds(t *testing.T) {
	text := "# HELP a x\n# TYPE a gauge\nvessel_agent_start_boot_seconds 1.25\nvessel_agent_start_boot_seconds_other 9\n"
	got, ok := metricSeconds(text, "vessel_agent_start_boot_seconds")
	if !ok || got != 1250*time.Millisecond {
		t.Errorf("got %v, %v; want 1.25s, true", got, ok)
	}
	if _, ok := metricSeconds(text, "vessel_agent_ready_boot_seconds"); ok {
		t.Error("found a missing metric")
	}
}
