package oci

import (
	"context"
	"encoding/json"
	"path"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// FuzzSandboxConfig feeds arbitrary config.json documents to the converter: no panic, and
// an accepted sandbox is consistent (absolute rootfs, sizes within the host and maxima).
func FuzzSandboxConfig(f *testing.F) {
	seed := func(s *specs.Spec) {
		b, err := json.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, false)
		f.Add(b, true)
	}
	seed(minimalSpec())
	full := minimalSpec()
	full.Annotations = map[string]string{
		AnnotationContainerdType: "sandbox", AnnotationSandboxCPUQuota: "150000",
		AnnotationSandboxCPUPeriod: "100000", AnnotationSandboxMemory: "134217728",
		"io.vessel.config.hypervisor.default_vcpus":     "2",
		"io.katacontainers.config.agent.kernel_modules": "a b=c",
	}
	full.Mounts = []specs.Mount{{Destination: "/dev/shm", Type: "tmpfs", Options: []string{"size=1m"}}, {Destination: "/d", Type: "bind", Source: "d"}}
	full.Linux = &specs.Linux{
		Devices:   []specs.LinuxDevice{{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229}},
		Resources: &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: ptr[int64](50000)}, Memory: &specs.LinuxMemory{Limit: ptr[int64](1 << 20)}},
	}
	full.Process.Capabilities = &specs.LinuxCapabilities{Bounding: []string{"CAP_CHOWN"}}
	seed(full)
	f.Add([]byte(`{"ociVersion":"1.3.0","root":{"path":"/r"},"process":{"args":["x"],"env":["A=b=c"]}}`), true)

	f.Fuzz(func(t *testing.T, doc []byte, static bool) {
		var spec specs.Spec
		if err := json.Unmarshal(doc, &spec); err != nil {
			return
		}
		sb, err := SandboxConfig(context.Background(), "c1", bundle, &spec, testConfig(static), opts)
		if err != nil {
			return
		}
		c := sb.Container
		if !path.IsAbs(c.Rootfs) || c.Process.Cwd == "" {
			t.Fatalf("inconsistent container: %+v", c)
		}
		s := sb.Sizing
		if s.VCPUs == 0 || s.VCPUs > s.MaxVCPUs || s.MaxVCPUs > host.CPUs ||
			s.MemoryMiB < 64 || s.MemoryMiB > s.MaxMemoryMiB || uint64(s.MaxMemoryMiB) > host.MemoryMiB {
			t.Fatalf("sizing out of bounds: %+v", s)
		}
		vm := sb.VM
		vm.ID, vm.StateDir, vm.SharedDir, vm.ShareTag = "c1", "/run/vessel/c1", "/run/vessel/c1/shared", "vessel"
		if err := vm.Validate(); err != nil {
			t.Fatalf("accepted sandbox gives an invalid VM config: %v", err)
		}
		for _, m := range c.Mounts {
			if !path.IsAbs(m.Destination) || IsBind(m) && !path.IsAbs(m.Source) {
				t.Fatalf("mount not resolved: %+v", m)
			}
		}
	})
}
