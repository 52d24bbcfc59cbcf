package shim

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/runtime-spec/specs-go/features"

	"github.com/vessel-containers/vessel/internal/agent/libct/known"
	"github.com/vessel-containers/vessel/internal/config"
	"github.com/vessel-containers/vessel/internal/hypervisor"
)

func TestFeaturesReflectTheBuild(t *testing.T) {
	// A driver registered in this binary is reported; none is named by hand.
	const driver = "features-test-driver"
	hypervisor.Register(driver, hypervisor.Driver{New: func(hypervisor.Config) (hypervisor.VM, error) { return nil, nil }})
	f := Features()

	if got, want := f.Annotations["io.vessel.hypervisors"], strings.Join(hypervisor.Drivers(), ","); got != want || !strings.Contains(got, driver) {
		t.Errorf("hypervisors: got %q, want %q including %s", got, want, driver)
	}
	for _, tc := range []struct {
		name      string
		got, want []string
	}{
		{"mount options", f.MountOptions, known.MountOptions()},
		{"namespaces", f.Linux.Namespaces, known.Namespaces()},
		{"capabilities", f.Linux.Capabilities, known.Capabilities()},
		{"seccomp actions", f.Linux.Seccomp.Actions, known.SeccompActions()},
		{"hooks", f.Hooks, []string{"prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"}},
	} {
		if !slices.Equal(tc.got, tc.want) || len(tc.got) == 0 {
			t.Errorf("%s: got %q, want %q", tc.name, tc.got, tc.want)
		}
	}
	var annotations int
	for _, k := range config.Keys() {
		for _, name := range k.AnnotationNames() {
			reported := slices.Contains(f.PotentiallyUnsafeConfigAnnotations, name)
			switch {
			case k.Supported() && !reported:
				t.Errorf("configuration annotation %s of key %s is not reported", name, k.FullName())
			case !k.Supported() && reported:
				t.Errorf("annotation %s of unsupported key %s is reported", name, k.FullName())
			}
			if k.Supported() {
				annotations++
			}
		}
	}
	if len(f.PotentiallyUnsafeConfigAnnotations) != annotations {
		t.Errorf("configuration annotations: got %d, want the key table's %d", len(f.PotentiallyUnsafeConfigAnnotations), annotations)
	}
}

func TestInfoCarriesFeatures(t *testing.T) {
	info, err := NewManager().Info(context.Background(), strings.NewReader(""))
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != RuntimeName {
		t.Errorf("name: got %q, want %q", info.Name, RuntimeName)
	}
	v, err := typeurl.UnmarshalAny(info.Features)
	if err != nil {
		t.Fatalf("decode features: %v", err)
	}
	f, ok := v.(*features.Features)
	if !ok {
		t.Fatalf("features are %T, want runtime-spec features", v)
	}
	if !slices.Equal(f.MountOptions, known.MountOptions()) || f.Annotations["io.vessel.isolation"] != "vm" {
		t.Errorf("features from Info: got %+v", f)
	}
	if got := info.Annotations["containerd.io/runtime-allow-mounts"]; got != "erofs,format/*,mkdir/*" {
		t.Errorf("mounts taken unmounted: got %q", got)
	}
}
