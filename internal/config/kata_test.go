package config

import (
	"bytes"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/vessel-containers/vessel/internal/hypervisor"
)

func TestKataKeyTable(t *testing.T) {
	seen := map[string]bool{}
	targets := map[string]string{}
	for _, k := range kataKeys {
		if seen[k.Kata] {
			t.Errorf("%s is listed twice", k.Kata)
		}
		seen[k.Kata] = true
		if (k.Vessel == "") == (k.Drop == "") {
			t.Errorf("%s: want exactly one of Vessel (%q) and Drop (%q)", k.Kata, k.Vessel, k.Drop)
		}
		if k.Vessel == "" {
			continue
		}
		section, name, _ := strings.Cut(k.Vessel, ".")
		if _, ok := lookupKey(section, name); !ok {
			t.Errorf("%s carries onto %s, which is not in the key table", k.Kata, k.Vessel)
		}
		if other, ok := targets[k.Vessel]; ok {
			t.Errorf("%s and %s both carry onto %s", other, k.Kata, k.Vessel)
		}
		targets[k.Vessel] = k.Kata
	}
}

func TestImportKataFixture(t *testing.T) {
	data, err := os.ReadFile("testdata/kata-configuration-qemu.toml")
	if err != nil {
		t.Fatal(err)
	}
	imp, err := ImportKata(data, "kata.toml")
	if err != nil {
		t.Fatal(err)
	}

	// Every key of the file is either carried or dropped, once.
	var tree map[string]any
	md, err := toml.Decode(string(data), &tree)
	if err != nil {
		t.Fatal(err)
	}
	leaves := 0
	for _, k := range md.Keys() {
		if md.Type(k...) != "Hash" {
			leaves++
		}
	}
	if got := len(imp.Carried) + len(imp.Dropped); got != leaves {
		t.Errorf("%d carried + %d dropped = %d, the file has %d keys", len(imp.Carried), len(imp.Dropped), got, leaves)
	}

	var dropped []string
	for _, d := range imp.Dropped {
		if d.Reason == "" {
			t.Errorf("%s dropped without a reason", d.Kata)
		}
		dropped = append(dropped, d.Kata)
	}
	wantDropped := []string{
		"hypervisor.qemu.kernel",
		"hypervisor.qemu.image",
		"hypervisor.qemu.rootfs_type",
		"hypervisor.qemu.firmware",
		"hypervisor.qemu.firmware_volume",
		"hypervisor.qemu.seccompsandbox",
		"hypervisor.qemu.default_bridges",
		"hypervisor.qemu.virtio_fs_daemon",
		"hypervisor.qemu.valid_virtio_fs_daemon_paths",
		"hypervisor.qemu.virtio_fs_queue_size",
		"hypervisor.qemu.virtio_fs_extra_args",
		"hypervisor.qemu.block_device_logical_sector_size",
		"hypervisor.qemu.block_device_physical_sector_size",
		"hypervisor.qemu.indep_iothreads",
		"hypervisor.qemu.reclaim_guest_freed_memory",
		"hypervisor.qemu.enable_vhost_user_store",
		"hypervisor.qemu.vhost_user_store_path",
		"hypervisor.qemu.enable_iommu_platform",
		"hypervisor.qemu.enable_numa",
		"hypervisor.qemu.numa_mapping",
		"hypervisor.qemu.valid_vhost_user_store_paths",
		"hypervisor.qemu.vhost_user_reconnect_timeout_sec",
		"hypervisor.qemu.pflashes",
		"hypervisor.qemu.extra_monitor_socket",
		"hypervisor.qemu.disable_nesting_checks",
		"hypervisor.qemu.disable_image_nvdimm", // Vessel supports only true
		"hypervisor.qemu.cold_plug_vfio",
		"hypervisor.qemu.valid_entropy_sources", // "" is no glob
		"hypervisor.qemu.rx_rate_limiter_max_rate",
		"hypervisor.qemu.tx_rate_limiter_max_rate",
		"hypervisor.qemu.guest_memory_dump_path",
		"hypervisor.qemu.guest_memory_dump_paging",
		"hypervisor.qemu.use_legacy_serial",
		"hypervisor.qemu.disable_selinux",
		"hypervisor.qemu.disable_guest_selinux",
		"agent.kata.cdh_api_timeout",
		"runtime.enable_vcpus_pinning",
		"runtime.guest_selinux_label",
		"runtime.enable_tracing",
		"runtime.jaeger_endpoint",
		"runtime.jaeger_user",
		"runtime.jaeger_password",
		"runtime.sandbox_bind_mounts",
		"runtime.vfio_mode",
		"runtime.disable_guest_empty_dir",
		"runtime.emptydir_mode",
		"runtime.enable_pprof",
		"runtime.dan_conf",
		"runtime.kubelet_root_dir",
		"runtime.pod_resource_api_sock",
	}
	if !reflect.DeepEqual(dropped, wantDropped) {
		t.Errorf("dropped\n%s\nwant\n%s", strings.Join(dropped, "\n"), strings.Join(wantDropped, "\n"))
	}

	c := imp.Config
	h := c.Hypervisor
	for _, check := range []struct {
		name      string
		got, want any
	}{
		{"path", h.Path, "/usr/bin/qemu-system-x86_64"},
		{"kernel (Vessel's own)", h.Kernel, DefaultKernel},
		{"default_vcpus", h.DefaultVCPUs, uint32(1)},
		{"default_memory", h.DefaultMemory, uint32(2048)},
		{"kernel_params", h.KernelParams, "cgroup_no_v1=all systemd.unified_cgroup_hierarchy=1"},
		{"cpu_features", h.CPUFeatures, "pmu=off"},
		{"shared_fs", h.SharedFS, hypervisor.SharedFSVirtioFS},
		{"virtio_fs_daemon (Vessel's own)", h.VirtioFSDaemon, DefaultVirtioFSDaemon},
		{"msize_9p", h.Msize9P, uint32(8192)},
		{"block_device_driver", h.BlockDeviceDriver, "virtio-scsi"},
		{"block_device_aio", h.BlockDeviceAIO, "io_uring"},
		{"disable_block_device_use", h.DisableBlockDeviceUse, true},
		{"create_container_timeout", c.Agent.CreateContainerTimeout, uint32(60)},
		{"disable_guest_seccomp", c.Runtime.DisableGuestSeccomp, true},
		{"static_sandbox_resource_mgmt", c.Runtime.StaticSandboxResourceMgmt, false},
		{"enable_annotations", c.Runtime.EnableAnnotations, []string{"enable_iommu", "kernel_params", "kernel_verity_params"}},
		{"template_path", c.Factory.TemplatePath, "/run/vc/vm/template"},
	} {
		if !reflect.DeepEqual(check.got, check.want) {
			t.Errorf("%s = %#v, want %#v", check.name, check.got, check.want)
		}
	}

	// The written configuration loads to the same configuration and names every drop.
	var out bytes.Buffer
	if err := imp.Encode(&out, "kata.toml"); err != nil {
		t.Fatal(err)
	}
	back, err := Parse(out.Bytes(), "imported")
	if err != nil {
		t.Fatalf("the written configuration does not load: %v\n%s", err, out.String())
	}
	if !reflect.DeepEqual(back, c) {
		t.Errorf("written and loaded back:\n%+v\nimported:\n%+v", back, c)
	}
	for _, d := range wantDropped {
		if !strings.Contains(out.String(), "#   "+d+" = ") {
			t.Errorf("the written configuration does not name dropped %s", d)
		}
	}
}

func TestImportKataDrops(t *testing.T) {
	imp, err := ImportKata([]byte(`[hypervisor.qemu]
default_vcpus = 1.5
default_memory = 1024
enable_virtio_mem = true
brand_new_key = "x"
[agent.kata]
dial_timeout = 10
[image]
service_offload = false
`), "k.toml")
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]string{}
	for _, d := range imp.Dropped {
		reasons[d.Kata] = d.Reason
	}
	for key, want := range map[string]string{
		"hypervisor.qemu.default_vcpus":     "hypervisor.default_vcpus takes no such value",
		"hypervisor.qemu.enable_virtio_mem": "Vessel refuses the value: not supported: virtio-mem",
		"hypervisor.qemu.brand_new_key":     "Vessel does not know this key",
		"image.service_offload":             "Vessel does not know this key",
	} {
		if !strings.Contains(reasons[key], want) {
			t.Errorf("%s: reason %q, want it to contain %q", key, reasons[key], want)
		}
	}
	if len(imp.Dropped) != 4 {
		t.Errorf("dropped %+v, want 4 keys", imp.Dropped)
	}
	if imp.Config.Hypervisor.DefaultMemory != 1024 || imp.Config.Agent.DialTimeout != 10 {
		t.Errorf("carried default_memory %d, dial_timeout %d", imp.Config.Hypervisor.DefaultMemory, imp.Config.Agent.DialTimeout)
	}
}

func TestImportKataRefuses(t *testing.T) {
	for _, tc := range []struct{ name, data, want string }{
		{"cloud hypervisor", "[hypervisor.clh]\npath = \"/usr/bin/cloud-hypervisor\"\n", "[hypervisor.clh]: only Kata's QEMU configuration"},
		{"not TOML", "[hypervisor.qemu\n", "kata configuration k.toml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ImportKata([]byte(tc.data), "k.toml")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
