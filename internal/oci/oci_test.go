package oci

import (
	"context"
	"reflect"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/vessel-containers/vessel/internal/config"
	"github.com/vessel-containers/vessel/internal/hypervisor"
)

func contains(s, sub string) bool { return strings.Contains(s, sub) }

const bundle = "/run/containerd/bundle/c1"

var host = config.Host{CPUs: 4, MemoryMiB: 8192}

var opts = Options{Host: host, MemoryFS: fakeMemoryFS, HostDevice: fakeHostDevice}

// fakeMemoryFS has a 64 MiB tmpfs (mode 1777) under /tmpfs/ and a 2 MiB-page hugetlbfs
// under /huge/; every other path is on a disk.
func fakeMemoryFS(p string) (FSInfo, error) {
	switch {
	case strings.HasPrefix(p, "/tmpfs/"):
		return FSInfo{Type: tmpfsMagic, Size: 64 << 20, BlockSize: 4096, Mode: 0o1777, UID: 0, GID: 5}, nil
	case strings.HasPrefix(p, "/huge/"):
		return FSInfo{Type: hugetlbfsMagic, BlockSize: 2 << 20, Mode: 0o755}, nil
	}
	return FSInfo{Type: 0xEF53, Size: 1 << 30, BlockSize: 4096, Mode: 0o755}, nil
}

// fakeHostDevice stands for a host that has every device except character 10:666 and block
// 8:666.
func fakeHostDevice(kind byte, major, minor int64) bool {
	return major != 10 && major != 8 || minor != 666
}

func ptr[T any](v T) *T { return &v }

// minimalSpec is a valid single-container spec.
func minimalSpec() *specs.Spec {
	return &specs.Spec{
		Version: "1.0.2-dev",
		Root:    &specs.Root{Path: "rootfs"},
		Process: &specs.Process{Args: []string{"sh"}, Env: []string{"PATH=/bin"}, Cwd: "/"},
	}
}

func TestIdentify(t *testing.T) {
	for _, tc := range []struct {
		name    string
		ann     map[string]string
		kind    Kind
		sandbox string
		wantErr string
	}{
		{"no annotations", nil, KindSingle, "c1", ""},
		{"containerd sandbox", map[string]string{AnnotationContainerdType: "sandbox", AnnotationContainerdSandboxID: "c1"}, KindPodSandbox, "c1", ""},
		{"containerd container", map[string]string{AnnotationContainerdType: "container", AnnotationContainerdSandboxID: "pod1"}, KindPodContainer, "pod1", ""},
		{"crio sandbox", map[string]string{AnnotationCRIOType: "sandbox", AnnotationCRIOSandboxID: "c1"}, KindPodSandbox, "c1", ""},
		{"crio container", map[string]string{AnnotationCRIOType: "container", AnnotationCRIOSandboxID: "pod1"}, KindPodContainer, "pod1", ""},
		{"kata pod_container", map[string]string{AnnotationKataType: "pod_container", AnnotationContainerdSandboxID: "pod1"}, KindPodContainer, "pod1", ""},
		{"kata agrees with containerd", map[string]string{AnnotationKataType: "pod_sandbox", AnnotationContainerdType: "sandbox"}, KindPodSandbox, "c1", ""},
		{"sandbox ignores other id", map[string]string{AnnotationContainerdType: "sandbox", AnnotationContainerdSandboxID: "other"}, KindPodSandbox, "c1", ""},
		{"container without sandbox id", map[string]string{AnnotationContainerdType: "container"}, "", "", "no sandbox id"},
		{"container is its own sandbox", map[string]string{AnnotationContainerdType: "container", AnnotationContainerdSandboxID: "c1"}, "", "", "names itself"},
		{"unknown type", map[string]string{AnnotationContainerdType: "pod"}, "", "", "unknown container type"},
		{"kata unknown type", map[string]string{AnnotationKataType: "sandbox"}, "", "", `"pod_sandbox" or "pod_container"`},
		{"types disagree", map[string]string{AnnotationContainerdType: "sandbox", AnnotationCRIOType: "container"}, "", "", "contradicts"},
		{"ids disagree", map[string]string{AnnotationContainerdType: "container", AnnotationContainerdSandboxID: "a", AnnotationCRIOSandboxID: "b"}, "", "", "contradicts"},
		{"bad sandbox id", map[string]string{AnnotationContainerdType: "container", AnnotationContainerdSandboxID: "../x"}, "", "", "sandbox id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kind, sid, err := Identify("c1", tc.ann)
			if tc.wantErr != "" {
				if err == nil || !contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || kind != tc.kind || sid != tc.sandbox {
				t.Fatalf("got %s %q %v; want %s %q", kind, sid, err, tc.kind, tc.sandbox)
			}
		})
	}
}

func TestParseEnv(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     []string
		want    []EnvVar
		wantErr string
	}{
		{"plain", []string{"A=1", "PATH=/bin:/usr/bin"}, []EnvVar{{"A", "1"}, {"PATH", "/bin:/usr/bin"}}, ""},
		{"value with =", []string{"OPTS=a=b=c"}, []EnvVar{{"OPTS", "a=b=c"}}, ""},
		{"empty value", []string{"EMPTY="}, []EnvVar{{"EMPTY", ""}}, ""},
		{"duplicates kept in order", []string{"A=1", "A=2"}, []EnvVar{{"A", "1"}, {"A", "2"}}, ""},
		{"empty key", []string{"=x"}, nil, "empty name"},
		{"no =", []string{"NOVALUE"}, nil, "no '='"},
		{"nul", []string{"A=b\x00c"}, nil, "NUL"},
		{"error names index", []string{"A=1", "bad"}, nil, "process.env[1]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseEnv(tc.env)
			if tc.wantErr != "" {
				if err == nil || !contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("got %v %v, want %v", got, err, tc.want)
			}
		})
	}
	if s := (EnvVar{"A", "b=c"}).String(); s != "A=b=c" {
		t.Fatalf("String() = %q", s)
	}
}

func TestContainerConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		name    string
		id      string
		bundle  string
		mutate  func(*specs.Spec)
		wantErr string
	}{
		{"ok", "c1", bundle, func(*specs.Spec) {}, ""},
		{"nil spec", "c1", bundle, nil, "no spec"},
		{"bad id", "../c", bundle, func(*specs.Spec) {}, "id"},
		{"dot id", ".", bundle, func(*specs.Spec) {}, "id"},
		{"relative bundle", "c1", "bundle", func(*specs.Spec) {}, "bundle"},
		{"version 1.3.0", "c1", bundle, func(s *specs.Spec) { s.Version = "1.3.0" }, ""},
		{"version 1.0.0-rc5", "c1", bundle, func(s *specs.Spec) { s.Version = "1.0.0-rc5" }, ""},
		{"version 1.9", "c1", bundle, func(s *specs.Spec) { s.Version = "1.9" }, ""},
		{"version 2", "c1", bundle, func(s *specs.Spec) { s.Version = "2.0.0" }, "ociVersion"},
		{"version empty", "c1", bundle, func(s *specs.Spec) { s.Version = "" }, "ociVersion"},
		{"version 0.x", "c1", bundle, func(s *specs.Spec) { s.Version = "0.6.0" }, "ociVersion"},
		{"no root", "c1", bundle, func(s *specs.Spec) { s.Root = nil }, "root.path"},
		{"no process", "c1", bundle, func(s *specs.Spec) { s.Process = nil }, "process: missing"},
		{"no args", "c1", bundle, func(s *specs.Spec) { s.Process.Args = nil }, "process.args"},
		{"relative cwd", "c1", bundle, func(s *specs.Spec) { s.Process.Cwd = "tmp" }, "process.cwd"},
		{"bad env", "c1", bundle, func(s *specs.Spec) { s.Process.Env = []string{"=x"} }, "process.env[0]"},
		{"bad capability", "c1", bundle, func(s *specs.Spec) {
			s.Process.Capabilities = &specs.LinuxCapabilities{Bounding: []string{"CAP_CHOWN"}, Ambient: []string{"chown"}}
		}, "process.capabilities.ambient[0]"},
		{"bad rlimit type", "c1", bundle, func(s *specs.Spec) { s.Process.Rlimits = []specs.POSIXRlimit{{Type: "NOFILE"}} }, "process.rlimits[0]"},
		{"rlimit soft above hard", "c1", bundle, func(s *specs.Spec) {
			s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 2, Hard: 1}}
		}, "soft 2 above hard 1"},
		{"relative mount destination", "c1", bundle, func(s *specs.Spec) { s.Mounts = []specs.Mount{{Destination: "proc", Type: "proc"}} }, "mounts[0].destination"},
		{"bind without source", "c1", bundle, func(s *specs.Spec) {
			s.Mounts = []specs.Mount{{Destination: "/data", Type: "none", Options: []string{"rbind"}}}
		}, "bind mount without a source"},
		{"device type", "c1", bundle, func(s *specs.Spec) {
			s.Linux = &specs.Linux{Devices: []specs.LinuxDevice{{Path: "/dev/x", Type: "s"}}}
		}, "allowed: c, b, u, p"},
		{"device relative path", "c1", bundle, func(s *specs.Spec) {
			s.Linux = &specs.Linux{Devices: []specs.LinuxDevice{{Path: "dev/x", Type: "c"}}}
		}, "linux.devices[0].path"},
		{"negative block device", "c1", bundle, func(s *specs.Spec) {
			s.Linux = &specs.Linux{Devices: []specs.LinuxDevice{{Path: "/dev/null", Type: "c", Major: 1, Minor: 3}, {Path: "/dev/sda", Type: "b", Major: 8, Minor: -1}}}
		}, "linux.devices[1] (/dev/sda): major 8 / minor -1 must not be negative"},
		{"disk mount source not clean", "c1", bundle, func(s *specs.Spec) {
			s.Mounts = []specs.Mount{{Destination: "/data", Type: "ext4", Source: "/dev/../dev/loop0"}}
		}, `mounts[0] (/data): ext4 device "/dev/../dev/loop0": not a clean absolute path`},
		{"host character device", "c1", bundle, func(s *specs.Spec) {
			s.Linux = &specs.Linux{Devices: []specs.LinuxDevice{{Path: "/dev/kvm", Type: "c", Major: 10, Minor: 232}}}
		}, "linux.devices[0] (/dev/kvm): character device 10:232 is a device of the host"},
		{"device negative major", "c1", bundle, func(s *specs.Spec) {
			s.Linux = &specs.Linux{Devices: []specs.LinuxDevice{{Path: "/dev/x", Type: "b", Major: -1}}}
		}, "must not be negative"},
		{"bad type annotation", "c1", bundle, func(s *specs.Spec) { s.Annotations = map[string]string{AnnotationCRIOType: "x"} }, AnnotationCRIOType},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var spec *specs.Spec
			if tc.mutate != nil {
				spec = minimalSpec()
				tc.mutate(spec)
			}
			_, err := ContainerConfig(context.Background(), tc.id, tc.bundle, spec, opts)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !contains(err.Error(), tc.wantErr) || !contains(err.Error(), "container "+tc.id) {
				t.Fatalf("got %v, want error for container %s containing %q", err, tc.id, tc.wantErr)
			}
		})
	}
}

func TestContainerConfigConversion(t *testing.T) {
	spec := minimalSpec()
	spec.Hostname = "h"
	spec.Root.Readonly = true
	spec.Process.Cwd = ""
	spec.Process.Terminal = true
	spec.Process.NoNewPrivileges = true
	spec.Process.User = specs.User{UID: 1000, GID: 100, AdditionalGids: []uint32{10, 20}, Umask: ptr[uint32](0o22)}
	spec.Process.Capabilities = &specs.LinuxCapabilities{Bounding: []string{"CAP_NET_BIND_SERVICE"}}
	spec.Process.Env = []string{"A=b=c"}
	spec.Mounts = []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc"},
		{Destination: "/data/", Type: "bind", Source: "data", Options: []string{"rbind", "ro"}},
		{Destination: "/abs", Source: "/host/abs", Options: []string{"bind"}},
	}
	spec.Linux = &specs.Linux{
		Devices: []specs.LinuxDevice{
			{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229},
			{Path: "/dev/null2", Type: "c", Major: 1, Minor: 3},
			{Path: "/dev/u", Type: "u", Major: 1, Minor: 9},
			{Path: "/dev/fifo", Type: "p"},
		},
		Resources: &specs.LinuxResources{
			CPU:    &specs.LinuxCPU{Quota: ptr[int64](50000), Period: ptr[uint64](100000)},
			Memory: &specs.LinuxMemory{Limit: ptr[int64](128 << 20)},
		},
	}
	c, err := ContainerConfig(context.Background(), "c1", bundle, spec, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, chk := range []struct {
		what      string
		got, want any
	}{
		{"rootfs", c.Rootfs, bundle + "/rootfs"},
		{"readonly", c.RootfsReadonly, true},
		{"kind", c.Kind, KindSingle},
		{"sandbox", c.SandboxID, "c1"},
		{"cwd", c.Process.Cwd, "/"},
		{"terminal", c.Process.Terminal, true},
		{"nnp", c.Process.NoNewPrivileges, true},
		{"uid", c.Process.User.UID, uint32(1000)},
		{"gids", len(c.Process.User.AdditionalGIDs), 2},
		{"umask", *c.Process.User.Umask, uint32(0o22)},
		{"env", c.Process.Env[0], EnvVar{"A", "b=c"}},
		{"caps", c.Process.Capabilities.Bounding[0], "CAP_NET_BIND_SERVICE"},
		{"proc source untouched", c.Mounts[0].Source, "proc"},
		{"bind source resolved", c.Mounts[1].Source, bundle + "/data"},
		{"destination cleaned", c.Mounts[1].Destination, "/data"},
		{"absolute source kept", c.Mounts[2].Source, "/host/abs"},
		{"devices", len(c.Devices), 4},
		{"resources", c.Resources, Resources{CPUQuota: 50000, CPUPeriod: 100000, MemoryLimitBytes: 128 << 20}},
		{"hostname", c.Hostname, "h"},
	} {
		if chk.got != chk.want {
			t.Errorf("%s = %v, want %v", chk.what, chk.got, chk.want)
		}
	}
	abs := minimalSpec()
	abs.Root.Path = "/var/lib/x/rootfs/"
	if c, err := ContainerConfig(context.Background(), "c1", bundle, abs, opts); err != nil || c.Rootfs != "/var/lib/x/rootfs" {
		t.Fatalf("absolute rootfs: %v %v", c, err)
	}
	// The caller's spec is not modified.
	if spec.Mounts[1].Source != "data" || spec.Mounts[1].Destination != "/data/" {
		t.Fatal("spec modified")
	}
}

// TestParseTmpfsSize checks that tmpfs's size= takes bytesize's counts but not zero, which
// sizes nothing.
func TestParseTmpfsSize(t *testing.T) {
	if n, ok := parseTmpfsSize("65536k"); n != 64<<20 || !ok {
		t.Errorf("65536k: %d, %v", n, ok)
	}
	for _, v := range []string{"0", "50%", ""} {
		if n, ok := parseTmpfsSize(v); ok {
			t.Errorf("%q: %d, want no size", v, n)
		}
	}
}

// testConfig enables every annotation.
func testConfig(static bool) *config.Config {
	c := config.Default()
	c.Runtime.StaticSandboxResourceMgmt = static
	c.Runtime.EnableAnnotations = []string{".*"}
	return c
}

func TestSandboxConfig(t *testing.T) {
	pod := func(ann map[string]string) *specs.Spec {
		s := minimalSpec()
		s.Annotations = map[string]string{AnnotationContainerdType: "sandbox", AnnotationContainerdSandboxID: "pod1"}
		s.Linux = &specs.Linux{Namespaces: podSandboxNamespaces()}
		for k, v := range ann {
			s.Annotations[k] = v
		}
		return s
	}
	single := func(quota int64, mem int64) *specs.Spec {
		s := minimalSpec()
		s.Linux = &specs.Linux{Resources: &specs.LinuxResources{
			CPU: &specs.LinuxCPU{Quota: &quota}, Memory: &specs.LinuxMemory{Limit: &mem},
		}}
		return s
	}
	for _, tc := range []struct {
		name                   string
		id                     string
		spec                   *specs.Spec
		static                 bool
		vcpus, maxv, mem, maxm uint32
		wantID                 string
		wantErr                string
	}{
		{name: "static pod from CRI totals", id: "pod1", static: true,
			spec:  pod(map[string]string{AnnotationSandboxCPUQuota: "110000", AnnotationSandboxCPUPeriod: "100000", AnnotationSandboxMemory: "134217728"}),
			vcpus: 3, maxv: 3, mem: 384, maxm: 384, wantID: "pod1"},
		{name: "static pod without totals", id: "pod1", static: true, spec: pod(nil),
			vcpus: 1, maxv: 1, mem: 256, maxm: 256, wantID: "pod1"},
		{name: "static single from its limits", id: "c1", static: true, spec: single(150000, 64<<20),
			vcpus: 3, maxv: 3, mem: 320, maxm: 320, wantID: "c1"},
		{name: "dynamic boots defaults", id: "c1", static: false, spec: single(150000, 64<<20),
			vcpus: 1, maxv: 4, mem: 256, maxm: 8192, wantID: "c1"},
		{name: "annotation sizes defaults", id: "c1", static: false,
			spec: func() *specs.Spec {
				s := minimalSpec()
				s.Annotations = map[string]string{config.PrefixKata + "hypervisor.default_vcpus": "2", config.PrefixVessel + "hypervisor.default_memory": "512"}
				return s
			}(),
			vcpus: 2, maxv: 4, mem: 512, maxm: 8192, wantID: "c1"},
		{name: "static capped at host", id: "c1", static: true, spec: single(1000000, 64<<30),
			vcpus: 4, maxv: 4, mem: 8192, maxm: 8192, wantID: "c1"},
		{name: "bad CRI total", id: "pod1", static: true, spec: pod(map[string]string{AnnotationSandboxMemory: "x"}), wantErr: AnnotationSandboxMemory},
		{name: "bad annotation", id: "c1", spec: func() *specs.Spec {
			s := minimalSpec()
			s.Annotations = map[string]string{config.PrefixVessel + "hypervisor.default_vcpus": "9"}
			return s
		}(), wantErr: "exceeds the host's 4 CPUs"},
		{name: "pod container", id: "c2", spec: func() *specs.Spec {
			s := minimalSpec()
			s.Annotations = map[string]string{AnnotationCRIOType: "container", AnnotationCRIOSandboxID: "pod1"}
			return s
		}(), wantErr: "creates no sandbox"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sb, err := SandboxConfig(context.Background(), tc.id, bundle, tc.spec, testConfig(tc.static), opts)
			if tc.wantErr != "" {
				if err == nil || !contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			s := sb.Sizing
			if s.VCPUs != tc.vcpus || s.MaxVCPUs != tc.maxv || s.MemoryMiB != tc.mem || s.MaxMemoryMiB != tc.maxm {
				t.Fatalf("sizing %d/%d vCPUs %d/%d MiB, want %d/%d %d/%d", s.VCPUs, s.MaxVCPUs, s.MemoryMiB, s.MaxMemoryMiB, tc.vcpus, tc.maxv, tc.mem, tc.maxm)
			}
			if sb.ID != tc.wantID || sb.Container.SandboxID != tc.wantID {
				t.Fatalf("sandbox id %q / %q, want %q", sb.ID, sb.Container.SandboxID, tc.wantID)
			}
			if sb.VM.VCPUs != s.VCPUs || sb.VM.MemoryMiB != s.MemoryMiB || sb.VM.MaxVCPUs != s.MaxVCPUs || sb.VM.MaxMemoryMiB != s.MaxMemoryMiB {
				t.Fatalf("VM config %+v does not carry sizing %+v", sb.VM, s)
			}
		})
	}
}

func TestSandboxConfigNeedsConfig(t *testing.T) {
	if _, err := SandboxConfig(context.Background(), "c1", bundle, minimalSpec(), nil, opts); err == nil {
		t.Fatal("nil config accepted")
	}
}

func TestHypervisorConfig(t *testing.T) {
	c := config.Default()
	c.Hypervisor.KernelParams = "quiet  panic=-1"
	c.Hypervisor.EnableDebug = true
	c.Hypervisor.MachineAccelerators, c.Hypervisor.CPUFeatures = "smm=off", "pmu=off"
	c.Hypervisor.EnableMemPrealloc, c.Hypervisor.EntropySource = true, "/dev/random"
	s := Sizing{VCPUs: 2, MaxVCPUs: 4, MemoryMiB: 512, MaxMemoryMiB: 1024}
	vm := HypervisorConfig(c, s)
	want := hypervisor.Config{
		Path: config.DefaultHypervisorPath, Kernel: config.DefaultKernel, Initrd: config.DefaultInitrd,
		KernelParams: []string{"quiet", "panic=-1"}, Accelerator: hypervisor.AccelAuto, MachineType: "q35",
		VCPUs: 2, MaxVCPUs: 4, MemoryMiB: 512, MaxMemoryMiB: 1024, MemorySlots: 10,
		SharedFS: hypervisor.SharedFS9P, Msize9P: 524288, Debug: true,
		MachineAccelerators: "smm=off", CPUFeatures: "pmu=off", MemPrealloc: true, EntropySource: "/dev/random",
		Block: hypervisor.BlockConfig{Driver: hypervisor.BlockVirtioBlk, AIO: hypervisor.AIOThreads},
	}
	if !equalVM(vm, want) {
		t.Fatalf("got  %+v\nwant %+v", vm, want)
	}
	// The cache keys apply only with block_device_cache_set.
	c.Hypervisor.BlockDeviceCacheDirect, c.Hypervisor.BlockDeviceCacheNoflush = true, true
	if b := HypervisorConfig(c, s).Block; b.CacheDirect || b.CacheNoFlush {
		t.Errorf("cache keys without block_device_cache_set applied: %+v", b)
	}
	c.Hypervisor.BlockDeviceCacheSet, c.Hypervisor.BlockDeviceAIO = true, "native"
	if b := HypervisorConfig(c, s).Block; !b.CacheDirect || !b.CacheNoFlush || b.AIO != hypervisor.AIONative {
		t.Errorf("cache keys with block_device_cache_set: got %+v, want direct, no-flush, native", b)
	}
	c.Hypervisor.DiskRateLimiterBwMaxRate, c.Hypervisor.DiskRateLimiterOpsMaxRate = 80_000_000, 500
	if b := HypervisorConfig(c, s).Block; b.MaxBytesPerSec != 10_000_000 || b.MaxIOPS != 500 {
		t.Errorf("rate limits: got %d bytes/s and %d ops/s, want 10000000 (bits / 8) and 500", b.MaxBytesPerSec, b.MaxIOPS)
	}
	c.Hypervisor.SharedFS = hypervisor.SharedFSVirtioFS
	if vm := HypervisorConfig(c, s); vm.Msize9P != 0 || vm.SharedFS != hypervisor.SharedFSVirtioFS {
		t.Fatalf("virtio-fs: %+v", vm)
	}
	// Filled by the caller, the result passes the driver's validation.
	vm.ID, vm.StateDir, vm.SharedDir, vm.ShareTag = "c1", "/run/vessel/c1", "/run/vessel/c1/shared", "vessel"
	if err := vm.Validate(); err != nil {
		t.Fatalf("driver validation: %v", err)
	}
}

func equalVM(a, b hypervisor.Config) bool { return reflect.DeepEqual(a, b) }

func TestStatus(t *testing.T) {
	for in, want := range map[string]specs.ContainerState{
		"creating": specs.StateCreating, "created": specs.StateCreated, "ready": specs.StateCreated,
		"running": specs.StateRunning, "paused": StatePaused, "pausing": StatePaused,
		"stopped": specs.StateStopped, "exited": specs.StateStopped,
	} {
		if got, err := Status(in); err != nil || got != want {
			t.Errorf("Status(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := Status("zombie"); err == nil {
		t.Error("unknown state accepted")
	}
	st := State("c1", bundle, specs.StateRunning, 42, map[string]string{"a": "b"})
	if st.Version != specs.Version || st.Pid != 42 || st.Status != specs.StateRunning || st.Bundle != bundle {
		t.Errorf("state %+v", st)
	}
	if st := State("c1", bundle, specs.StateStopped, 42, nil); st.Pid != 0 {
		t.Errorf("stopped state reports pid %d", st.Pid)
	}
}

// TestAbsentDevices checks that devices the host does not have are nodes only, and that
// the kernel's own character devices and the host's block devices are not.
func TestAbsentDevices(t *testing.T) {
	spec := minimalSpec()
	spec.Linux = &specs.Linux{Devices: []specs.LinuxDevice{
		{Path: "/dev/null", Type: "c", Major: 1, Minor: 3},
		{Path: "/dev/test1", Type: "c", Major: 10, Minor: 666},
		{Path: "/dev/test2", Type: "b", Major: 8, Minor: 666},
		{Path: "/dev/test3", Type: "u", Major: 10, Minor: 666},
		{Path: "/dev/sda", Type: "b", Major: 8, Minor: 0},
		{Path: "/dev/fifo", Type: "p"},
	}}
	c, err := ContainerConfig(context.Background(), "c1", bundle, spec, opts)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"/dev/test1", "/dev/test2", "/dev/test3"}; !slices.Equal(c.AbsentDevices, want) {
		t.Errorf("absent devices: got %q, want %q", c.AbsentDevices, want)
	}
	if len(c.Devices) != 6 {
		t.Errorf("devices: got %d, want all 6", len(c.Devices))
	}
}

// TestBlockDevicesAndDiskMounts checks that host block devices and disk mounts reach the
// plan as given, and which mounts are disk mounts.
func TestBlockDevicesAndDiskMounts(t *testing.T) {
	spec := minimalSpec()
	spec.Linux = &specs.Linux{Devices: []specs.LinuxDevice{{Path: "/dev/xvda", Type: "b", Major: 7, Minor: 3}}}
	spec.Mounts = []specs.Mount{{Destination: "/data", Type: "ext4", Source: "/dev/loop3", Options: []string{"ro"}}}
	c, err := ContainerConfig(context.Background(), "c1", bundle, spec, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Devices) != 1 || c.Devices[0].Type != "b" || c.Devices[0].Major != 7 {
		t.Errorf("devices: got %+v", c.Devices)
	}
	if len(c.Mounts) != 1 || !IsDiskMount(c.Mounts[0]) {
		t.Errorf("mounts: got %+v, want one disk mount", c.Mounts)
	}
	for _, tc := range []struct {
		m    specs.Mount
		want bool
	}{
		{specs.Mount{Type: "ext4", Source: "/dev/sdb1"}, true},
		{specs.Mount{Type: "xfs", Source: "/dev/mapper/vg-lv"}, true},
		{specs.Mount{Type: "ext4", Source: "/dev/sdb1", Options: []string{"bind"}}, false},
		{specs.Mount{Type: "bind", Source: "/dev/sdb1"}, false},
		{specs.Mount{Type: "tmpfs", Source: "tmpfs"}, false},
		{specs.Mount{Type: "ext4", Source: "/srv/image.ext4"}, false},
		{specs.Mount{Type: "devpts", Source: "/dev/pts"}, false},
	} {
		if got := IsDiskMount(tc.m); got != tc.want {
			t.Errorf("IsDiskMount(%+v) = %v, want %v", tc.m, got, tc.want)
		}
	}
}

func TestRootfsDisk(t *testing.T) {
	cfg := config.Default()
	dm := specs.Mount{Type: "ext4", Source: "/dev/mapper/containerd-pool-snap-7", Options: []string{"rw"}}
	got := RootfsDisk([]specs.Mount{dm}, cfg)
	if got == nil || got.Source != dm.Source || got.Type != "ext4" || got.Destination != "/" {
		t.Fatalf("devmapper rootfs: got %+v", got)
	}
	for _, tc := range []struct {
		name   string
		mounts []specs.Mount
	}{
		{"overlay", []specs.Mount{{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=/a", "upperdir=/b", "workdir=/c"}}}},
		{"bind", []specs.Mount{{Type: "bind", Source: "/var/lib/snap/1", Options: []string{"rbind"}}}},
		{"file image without loop", []specs.Mount{{Type: "ext4", Source: "/var/lib/blockfile/3"}}},
		{"loop image, relative", []specs.Mount{{Type: "ext4", Source: "snap/3", Options: []string{"loop"}}}},
		{"two mounts", []specs.Mount{dm, dm}},
		{"none", nil},
	} {
		if got := RootfsDisk(tc.mounts, cfg); got != nil {
			t.Errorf("%s: got %+v, want nil (shared as files)", tc.name, got)
		}
	}
	bf := specs.Mount{Type: "ext4", Source: "/var/lib/containerd/io.containerd.snapshotter.v1.blockfile/snapshots/3", Options: []string{"rw", "loop"}}
	if got := RootfsDisk([]specs.Mount{bf}, cfg); got == nil || got.Source != bf.Source {
		t.Errorf("blockfile rootfs: got %+v", got)
	}
	cfg.Hypervisor.DisableBlockDeviceUse = true
	if got := RootfsDisk([]specs.Mount{dm}, cfg); got != nil {
		t.Errorf("with disable_block_device_use: got %+v, want nil", got)
	}
}

// TestBindMountDataDropped checks that a bind mount keeps its flag, propagation and
// recursive options and loses file system data options, which mount(2) ignores on a bind
// mount, while other mounts keep theirs.
func TestBindMountDataDropped(t *testing.T) {
	spec := minimalSpec()
	spec.Mounts = []specs.Mount{
		{Destination: "/etc2", Source: "/etc", Options: []string{"nosuid", "strictatime", "mode=755", "size=1k", "rbind", "rshared", "rro"}},
		{Destination: "/t", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "mode=755", "size=1k"}},
	}
	c, err := ContainerConfig(context.Background(), "c1", bundle, spec, opts)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Mounts[0].Options, []string{"nosuid", "strictatime", "rbind", "rshared", "rro"}; !slices.Equal(got, want) {
		t.Errorf("bind options: got %q, want %q", got, want)
	}
	if got, want := c.Mounts[1].Options, []string{"nosuid", "mode=755", "size=1k"}; !slices.Equal(got, want) {
		t.Errorf("tmpfs options: got %q, want %q", got, want)
	}
	if got := spec.Mounts[0].Options; len(got) != 7 {
		t.Errorf("the spec given was modified: %q", got)
	}
}

// erofsMounts is the erofs snapshotter's rootfs with default_size set, as the shim gets it
// after containerd's mount manager made the writable layer's file system: the writable
// ext4 file, two erofs layers, and the templated overlay.
func erofsMounts(lowerdir, upperdir string) []specs.Mount {
	root := "/var/lib/containerd/io.containerd.snapshotter.v1.erofs/snapshots/"
	return []specs.Mount{
		{Type: "ext4", Source: root + "9/rwlayer.img", Options: []string{"rw", "loop"}},
		{Type: "erofs", Source: root + "5/layer.erofs", Options: []string{"ro", "loop"}},
		{Type: "erofs", Source: root + "2/layer.erofs", Options: []string{"ro", "loop"}},
		{Type: "format/mkdir/overlay", Source: "overlay", Options: []string{
			"X-containerd.mkdir.path={{ mount 0 }}/upper:0755", "X-containerd.mkdir.path={{ mount 0 }}/work:0755",
			"workdir={{ mount 0 }}/work", "upperdir=" + upperdir, "lowerdir=" + lowerdir, "index=off",
		}},
	}
}

func TestRootfsDisks(t *testing.T) {
	cfg := config.Default()
	disk, o, err := RootfsDisks(erofsMounts("{{ overlay 1 2 }}", "{{ mount 0 }}/upper"), cfg)
	if err != nil || disk != nil || o == nil {
		t.Fatalf("erofs rootfs: got %+v %+v %v, want an overlay", disk, o, err)
	}
	if len(o.Disks) != 3 || o.Disks[1].Type != "erofs" || o.Disks[0].Type != "ext4" {
		t.Errorf("disks: %+v", o.Disks)
	}
	if want := []DiskDir{{Disk: 1}, {Disk: 2}}; !slices.Equal(o.Lower, want) {
		t.Errorf("lower: got %+v, want %+v", o.Lower, want)
	}
	if o.Upper != (DiskDir{0, "upper"}) || o.Work != (DiskDir{0, "work"}) || !slices.Equal(o.Options, []string{"index=off"}) {
		t.Errorf("upper %+v work %+v options %q", o.Upper, o.Work, o.Options)
	}
	if _, o, err := RootfsDisks(erofsMounts("{{ overlay 2 1 }}", "{{ mount 0 }}/upper"), cfg); err != nil || !slices.Equal(o.Lower, []DiskDir{{Disk: 2}, {Disk: 1}}) {
		t.Errorf("reversed overlay range: %+v %v", o, err)
	}
	// A blockfile rootfs is still one disk.
	bf := specs.Mount{Type: "ext4", Source: "/var/lib/blockfile/snapshots/3", Options: []string{"rw", "loop"}}
	if disk, o, err := RootfsDisks([]specs.Mount{bf}, cfg); err != nil || o != nil || disk == nil || disk.Source != bf.Source {
		t.Errorf("blockfile rootfs: %+v %+v %v", disk, o, err)
	}
	for _, tc := range []struct {
		name   string
		mounts []specs.Mount
		want   string
	}{
		{"upper on the host, work on a disk", erofsMounts("{{ mount 1 }}", "/var/lib/erofs/snapshots/9/fs"), "different disks"},
		{"relative host path", erofsMounts("{{ mount 1 }}", "snapshots/9/fs"), "clean absolute host path"},
		{"missing mount", erofsMounts("{{ overlay 1 7 }}", "{{ mount 0 }}/upper"), "do not all exist"},
		{"lower is the upper disk", erofsMounts("{{ mount 0 }}", "{{ mount 0 }}/upper"), "also the writable layer"},
		{"unclean path", erofsMounts("{{ mount 1 }}", "{{ mount 0 }}/../upper"), "not clean"},
		{"unexpanded mkfs", append([]specs.Mount{{Type: "mkfs/ext4", Source: "/x/rwlayer.img", Options: []string{"loop"}}}, erofsMounts("{{ mount 1 }}", "{{ mount 0 }}/upper")[1:]...), `"mkfs/ext4"`},
		{"not an overlay", []specs.Mount{bf, {Type: "format/bind", Source: "{{ mount 0 }}/upper"}}, `"format/bind"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, o, err := RootfsDisks(tc.mounts, cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %+v, %v; want an error containing %q", o, err, tc.want)
			}
		})
	}
	// The erofs snapshotter without default_size: the writable layer is a host directory,
	// so the whole overlay is mounted on the host.
	root := "/var/lib/containerd/io.containerd.snapshotter.v1.erofs/snapshots/"
	hostUpper := []specs.Mount{
		{Type: "erofs", Source: root + "5/layer.erofs", Options: []string{"ro", "loop"}},
		{Type: "format/mkdir/overlay", Source: "overlay", Options: []string{"workdir=" + root + "9/work", "upperdir=" + root + "9/fs", "lowerdir={{ mount 0 }}"}},
	}
	if disk, o, err := RootfsDisks(hostUpper, cfg); err != nil || disk != nil || o != nil {
		t.Errorf("writable layer on the host: %+v %+v %v, want neither (mounted on the host)", disk, o, err)
	}
	if o, err := HostOverlay(hostUpper); err != nil || o.Upper != (DiskDir{-1, root + "9/fs"}) || !slices.Equal(o.Lower, []DiskDir{{Disk: 0}}) {
		t.Errorf("host overlay: %+v %v", o, err)
	}
	cfg.Hypervisor.DisableBlockDeviceUse = true
	if disk, o, err := RootfsDisks(erofsMounts("{{ mount 1 }}", "{{ mount 0 }}/upper"), cfg); err != nil || disk != nil || o != nil {
		t.Errorf("erofs layers with disable_block_device_use: %+v %+v %v, want neither (mounted on the host)", disk, o, err)
	}
}

func TestDirectVolume(t *testing.T) {
	bind := specs.Mount{Destination: "/data", Type: "bind", Source: "/var/lib/kubelet/pv1/mount", Options: []string{"rbind", "ro", "nosuid"}}
	got, err := DirectVolume(bind, "/srv/vol.img", "ext4", []string{"errors=remount-ro"}, true)
	if err != nil {
		t.Fatal(err)
	}
	want := specs.Mount{Destination: "/data", Type: "ext4", Source: "/srv/vol.img", Options: []string{"errors=remount-ro", "ro", "nosuid", "loop"}}
	if got.Destination != want.Destination || got.Type != want.Type || got.Source != want.Source || !slices.Equal(got.Options, want.Options) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if !IsDiskMount(got) {
		t.Errorf("the direct volume of an image file is not a disk mount: %+v", got)
	}
	if dev, _ := DirectVolume(bind, "/dev/sdb", "xfs", nil, false); !IsDiskMount(dev) || slices.Contains(dev.Options, "loop") {
		t.Errorf("device volume: %+v", dev)
	}
	if _, err := DirectVolume(bind, "/dev/sdb", "nfs", nil, false); err == nil || !strings.Contains(err.Error(), `"nfs"`) {
		t.Errorf("nfs volume: %v, want an error naming the type", err)
	}
}
