package sandbox

import (
	"debug/elf"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/testutil"
)

// TestMicroVM boots a sandbox on QEMU's microvm machine (virtio-mmio devices, no PCI), runs
// a container over the shared file system and checks what the guest sees, and that a disk
// hotplug is refused naming the machine.
func TestMicroVM(t *testing.T) {
	g := testutil.RequiresVM(t)
	if !kernelHas(t, g.Kernel, "virtio_mmio_probe") {
		t.Skipf("guest kernel %s has no virtio-mmio driver (rebuild it with `make image`)", g.Kernel)
	}
	e := newEnvWith(t, func(c *Config) {
		c.VM.MachineType = "microvm"
		c.VM.MaxVCPUs, c.VM.MaxMemoryMiB, c.VM.MemorySlots = c.VM.VCPUs, c.VM.MemoryMiB, 0
	})
	c := e.container("mvm", []string{"sh", "-c", "cat /proc/cmdline; ls /sys/bus/pci/devices 2>/dev/null | wc -l; ls /sys/bus/virtio/devices | wc -l; echo hello > /tmp/x && cat /tmp/x"}, nil)
	code, out, errOut := e.run(c, nil)
	if code != 0 {
		t.Fatalf("container exited %d: %s %s", code, out, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 {
		t.Fatalf("output %q: want 4 lines", out)
	}
	if lines[1] != "0" {
		t.Errorf("guest sees %s PCI devices on a microvm, want 0", lines[1])
	}
	// serial (agent), rng, 9p or virtio-fs, balloon.
	if n, err := strconv.Atoi(lines[2]); err != nil || n < 4 {
		t.Errorf("guest sees %s virtio devices, want at least 4", lines[2])
	}
	if lines[3] != "hello" {
		t.Errorf("container wrote and read %q, want hello", lines[3])
	}
	if hp, ok := e.sb.VM().(hypervisor.DiskHotplugger); ok {
		f, err := os.CreateTemp(t.TempDir(), "disk")
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := f.Truncate(1 << 20); err != nil {
			t.Fatal(err)
		}
		_, err = hp.AttachDisk(t.Context(), hypervisor.Disk{ID: "d0", File: f})
		if err == nil || !errors.Is(err, errdefs.ErrNotImplemented) || !strings.Contains(err.Error(), "microvm") {
			t.Errorf("disk attach on a microvm: %v, want a not-implemented error naming microvm", err)
		}
	}
}

// kernelHas tells whether the ELF kernel at path has the symbol sym.
func kernelHas(t *testing.T, path, sym string) bool {
	t.Helper()
	f, err := elf.Open(filepath.Clean(path))
	if err != nil {
		t.Fatalf("open guest kernel: %v", err)
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		return false
	}
	for _, s := range syms {
		if s.Name == sym {
			return true
		}
	}
	return false
}
