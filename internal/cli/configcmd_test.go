package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigImportKataThenEnv imports Kata's QEMU configuration fixture with `vessel config
// import-kata -o`, then checks that `vessel env` on the result shows the carried values
// and that the import named the keys it dropped.
func TestConfigImportKataThenEnv(t *testing.T) {
	out := filepath.Join(t.TempDir(), "configuration.toml")
	var msgs bytes.Buffer
	app := testApp(configCommand(), &msgs)
	if err := app.Run([]string{"vessel", "config", "import-kata", "-o", out, "../config/testdata/kata-configuration-qemu.toml"}); err != nil {
		t.Fatalf("import-kata: %v\n%s", err, msgs.String())
	}
	for _, want := range []string{
		"53 keys carried over, 50 not:\n",
		"  dropped hypervisor.qemu.kernel = \"/usr/share/kata-containers/vmlinux.container\": Kata's guest runs kata-agent",
		"  dropped hypervisor.qemu.virtio_fs_daemon = \"/usr/libexec/virtiofsd\": Kata's virtiofsd is the Rust daemon",
		"  dropped hypervisor.qemu.disable_image_nvdimm = false: Vessel refuses the value: not supported",
		"  dropped runtime.jaeger_endpoint = \"\": no equivalent",
	} {
		if !strings.Contains(msgs.String(), want) {
			t.Errorf("import-kata's report lacks %q:\n%s", want, msgs.String())
		}
	}
	if n := strings.Count(msgs.String(), "\n  dropped "); n != 50 {
		t.Errorf("the report names %d dropped keys, want 50", n)
	}

	var env bytes.Buffer
	if err := testApp(EnvCommand(), &env).Run([]string{"vessel", "env", "--config", out}); err != nil {
		t.Fatalf("env: %v\n%s", err, env.String())
	}
	for _, want := range []string{
		"from " + out,
		"\ndefault_vcpus = 1\n",
		"\ndefault_memory = 2048\n",
		"\nkernel_params = \"cgroup_no_v1=all systemd.unified_cgroup_hierarchy=1\"\n",
		"\ncpu_features = \"pmu=off\"\n",
		"\nshared_fs = \"virtio-fs\"\n",
		"\nmsize_9p = 8192\n",
		"\nblock_device_driver = \"virtio-scsi\"\n",
		"\nblock_device_aio = \"io_uring\"\n",
		"\ncreate_container_timeout = 60\n",
		"\nstatic_sandbox_resource_mgmt = false\n",
		"\nenable_annotations = [\"enable_iommu\", \"kernel_params\", \"kernel_verity_params\"]\n",
		"\ntemplate_path = \"/run/vc/vm/template\"\n",
		// Vessel's own guest and virtiofsd stay.
		"\nkernel = \"/var/lib/vessel/guest/vmlinux\"\n",
		"\nvirtio_fs_daemon = \"/usr/lib/qemu/virtiofsd\"\n",
	} {
		if !strings.Contains(env.String(), want) {
			t.Errorf("vessel env lacks %q:\n%s", want, env.String())
		}
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), "# 50 Kata keys not carried over:\n") {
		t.Errorf("the written configuration does not list the dropped keys:\n%s", data)
	}
}

func TestConfigImportKataArgs(t *testing.T) {
	var msgs bytes.Buffer
	if err := testApp(configCommand(), &msgs).Run([]string{"vessel", "config", "import-kata"}); err == nil || !strings.Contains(err.Error(), "want one argument") {
		t.Errorf("no argument: %v", err)
	}
}
