package harness

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/vessel-containers/vessel/bench/internal/procfs"
	"github.com/vessel-containers/vessel/bench/internal/report"
	"github.com/vessel-containers/vessel/internal/config"
	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/oci"
)

// vmConfig is the VM Vessel boots for a container without resource limits under cfg: the
// floor boots the same one, with its own initramfs.
func vmConfig(cfg *config.Config) (hypervisor.Config, error) {
	host, err := config.DetectHost()
	if err != nil {
		return hypervisor.Config{}, fmt.Errorf("inspect host: %w", err)
	}
	sizing := oci.ComputeSizing(cfg.Limits(host))
	if cfg.Runtime.StaticSandboxResourceMgmt {
		sizing.MaxVCPUs, sizing.MaxMemoryMiB = sizing.VCPUs, sizing.MemoryMiB
	}
	return oci.HypervisorConfig(cfg, sizing), nil
}

func describeVM(cfg *config.Config, path string) report.VMConfig {
	v := report.VMConfig{ConfigFile: describeSource(path), Machine: cfg.Hypervisor.MachineType, TBSizeMiB: cfg.Hypervisor.TBSizeMiB,
		SharedFS: string(cfg.Hypervisor.SharedFS), KernelParams: cfg.Hypervisor.KernelParams}
	if vm, err := vmConfig(cfg); err == nil {
		v.VCPUs, v.MemoryMiB = vm.VCPUs, vm.MemoryMiB
	}
	return v
}

func describeMachine(ctx context.Context, cfg *config.Config, shimDir string) report.Machine {
	m := report.Machine{CPUs: runtime.NumCPU(), CPUModel: cpuModel()}
	if total, _, err := procfs.HostMemInfo(); err == nil {
		m.MemoryGiB = float64(total) / (1 << 30)
	}
	var u unix.Utsname
	if err := unix.Uname(&u); err == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	switch cfg.Hypervisor.Accelerator {
	case hypervisor.AccelKVM:
		m.Accelerator = "KVM"
	case hypervisor.AccelTCG:
		m.Accelerator = "TCG (forced by configuration)"
	default:
		if err := hypervisor.KVMUsable(); err != nil {
			m.Accelerator = "TCG (software emulation; KVM not usable here)"
		} else {
			m.Accelerator = "KVM"
		}
	}
	m.QEMU = firstLine(ctx, cfg.Hypervisor.Path, "--version")
	m.Containerd = firstLine(ctx, "containerd", "--version")
	m.Runc = firstLine(ctx, "runc", "--version")
	m.VesselVersion = firstLine(ctx, filepath.Join(shimDir, "vessel"), "--version")
	if st, err := os.Stat(cfg.Hypervisor.Initrd); err == nil {
		m.GuestInitramfsMiB = float64(st.Size()) / (1 << 20)
	}
	m.GuestKernel = guestKernel(cfg.Hypervisor.Kernel)
	return m
}

// guestKernel describes the kernel from the image's manifest.json, if there is one.
func guestKernel(kernel string) string {
	data, err := os.ReadFile(filepath.Join(filepath.Dir(kernel), "manifest.json"))
	if err != nil {
		return kernel
	}
	var mf struct {
		Kernel struct {
			Source  string `json:"source"`
			Version string `json:"version"`
			Key     string `json:"key"`
		} `json:"kernel"`
		Compression string `json:"compression"`
	}
	if err := json.Unmarshal(data, &mf); err != nil {
		return kernel
	}
	return fmt.Sprintf("%s (%s %s, key %s), initramfs %s", filepath.Base(kernel), mf.Kernel.Source, mf.Kernel.Version, mf.Kernel.Key, mf.Compression)
}

func firstLine(ctx context.Context, bin string, args ...string) string {
	out, err := exec.CommandContext(ctx, bin, args...).Output()
	if err != nil {
		return "unknown"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}
