package critest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/vessel-containers/vessel/internal/config"
	"github.com/vessel-containers/vessel/internal/oci"
	"github.com/vessel-containers/vessel/internal/testutil"
)

// TestPodSizing runs a pod through CRI (crictl, CRICTL_BIN) whose sandbox has CPU and
// memory limits, which containerd passes to the runtime as the io.kubernetes.cri.sandbox-*
// annotations, and checks that its VM boots with the vCPUs and memory oci.ComputeSizing
// gives for them under the test's configuration on this host.
func TestPodSizing(t *testing.T) {
	if os.Getenv("VESSEL_CRITEST") != "1" {
		t.Skip("set VESSEL_CRITEST=1 to size a pod's VM through CRI")
	}
	testutil.RequiresVM(t)
	crictl := os.Getenv("CRICTL_BIN")
	if crictl == "" {
		t.Fatal("CRICTL_BIN names no crictl binary (make pod-overhead builds one)")
	}
	cfg, err := config.Parse(testutil.GuestIn(testutil.GuestDir()).Config(""), "vessel.toml")
	if err != nil {
		t.Fatal(err)
	}
	host, err := config.DetectHost()
	if err != nil {
		t.Fatal(err)
	}
	limits := oci.Resources{CPUQuota: 50000, CPUPeriod: 100000, MemoryLimitBytes: 128 << 20}
	want := oci.ComputeSizing(cfg.Limits(host), limits)

	d := startCRI(t, filepath.Join(t.TempDir(), "out"))
	cri, write := crictlFor(t, crictl, d.Address)
	pod := write("pod.json", map[string]any{
		"metadata": map[string]any{"name": "sized", "uid": "sized-uid", "namespace": "default"},
		"linux": map[string]any{"resources": map[string]any{
			"cpu_period": limits.CPUPeriod, "cpu_quota": limits.CPUQuota, "memory_limit_in_bytes": limits.MemoryLimitBytes,
		}},
	})
	podID := cri("runp", "--runtime", "vessel", pod)
	t.Cleanup(func() { removePod(t, crictl, d.Address, podID) })

	qemu, mem := qemuOf(t, podID)
	if got := mem >> 20; got != int64(want.MemoryMiB) {
		t.Errorf("VM memory = %d MiB, want %d MiB (default_memory plus the pod's 128 MiB)", got, want.MemoryMiB)
	}
	smp := qemuArg(t, qemu, "-smp")
	vcpus, err := strconv.Atoi(strings.SplitN(smp, ",", 2)[0])
	if err != nil {
		t.Fatalf("-smp %q: %v", smp, err)
	}
	t.Logf("pod limits 0.5 CPU, 128 MiB: VM boots with %d vCPUs (-smp %s) and %d MiB", vcpus, smp, mem>>20)
	if vcpus != int(want.VCPUs) {
		t.Errorf("VM vCPUs = %d (-smp %s), want %d (default_vcpus plus ceil(0.5), at most %d)", vcpus, smp, want.VCPUs, want.MaxVCPUs)
	}
}

// qemuArg is the value that follows flag on pid's command line.
func qemuArg(t *testing.T, pid int, flag string) string {
	t.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		t.Fatal(err)
	}
	args := strings.Split(string(bytes.TrimRight(raw, "\x00")), "\x00")
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag {
			return args[i+1]
		}
	}
	t.Fatalf("QEMU (pid %d) has no %s", pid, flag)
	return ""
}
