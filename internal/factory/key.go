package factory

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/vessel-containers/vessel/internal/hypervisor"
)

// Field is one named input of a VM's configuration key.
type Field struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Key is what must be equal between a sandbox's VM configuration and a template or cached
// VM for the sandbox to use it: everything that shapes the machine and its device state
// except the VM's identity (id, state dir, shared dir path) and its size, which Shape
// compares. Files (QEMU, kernel, initrd) count by content identity (size and modification
// time), so rebuilding the guest image or upgrading QEMU makes a template stale.
type Key []Field

// KeyOf computes the key of cfg for driver. stat reads file identities (os.Stat when nil).
func KeyOf(driver string, cfg hypervisor.Config, stat func(string) (os.FileInfo, error)) Key {
	if stat == nil {
		stat = os.Stat
	}
	file := func(path string) string {
		if path == "" {
			return ""
		}
		st, err := stat(path)
		if err != nil {
			return "missing"
		}
		return fmt.Sprintf("size=%d,mtime=%d", st.Size(), st.ModTime().UnixNano())
	}
	sharedFS := cfg.SharedFS
	if sharedFS == "" {
		sharedFS = hypervisor.SharedFSNone
	}
	k := Key{
		{"driver", driver},
		{"path", cfg.Path},
		{"path.file", file(cfg.Path)},
		{"kernel", cfg.Kernel},
		{"kernel.file", file(cfg.Kernel)},
		{"initrd", cfg.Initrd},
		{"initrd.file", file(cfg.Initrd)},
		{"kernel_params", strings.Join(cfg.KernelParams, " ")},
		{"accelerator", string(cfg.Accelerator)},
		{"machine_type", cfg.MachineType},
		{"machine_accelerators", cfg.MachineAccelerators},
		{"cpu_features", cfg.CPUFeatures},
		{"mem_prealloc", fmt.Sprint(cfg.MemPrealloc)},
		{"entropy_source", cfg.EntropySource},
		{"shared_fs", string(sharedFS)},
		{"share_tag", cfg.ShareTag},
		{"tb_size_mib", fmt.Sprint(cfg.TBSizeMiB)},
		{"debug", fmt.Sprint(cfg.Debug)},
		{"block", fmt.Sprintf("%s,aio=%s,direct=%v,no-flush=%v,bps=%d,iops=%d", cfg.Block.Driver, cfg.Block.AIO,
			cfg.Block.CacheDirect, cfg.Block.CacheNoFlush, cfg.Block.MaxBytesPerSec, cfg.Block.MaxIOPS)},
	}
	return k
}

// withUserNS is k for the VM cache, whose VMs run unprivileged or not as a whole: with
// unprivileged set it names an unprivileged VMM (which ids it runs on is the VM's
// identity, not its key). A template's key has no such field: the template is saved by a
// VMM as root, and restored by either.
func withUserNS(k Key, unprivileged bool) Key {
	if !unprivileged {
		return k
	}
	return append(slices.Clip(k), Field{"vmm_user_namespace", "on"})
}

// Hash is a short digest of the key, stable across processes.
func (k Key) Hash() string {
	h := sha256.New()
	for _, f := range k {
		fmt.Fprintf(h, "%s=%s\n", f.Name, f.Value)
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// Diff names the fields whose values differ between k and other ("kernel.file", ...),
// including fields only one of them has.
func (k Key) Diff(other Key) []string {
	values := map[string]string{}
	for _, f := range other {
		values[f.Name] = f.Value
	}
	var diff []string
	for _, f := range k {
		v, ok := values[f.Name]
		if !ok || v != f.Value {
			diff = append(diff, f.Name)
		}
		delete(values, f.Name)
	}
	for name := range values {
		diff = append(diff, name)
	}
	slices.Sort(diff)
	return diff
}

// Shape is a VM's size at boot and how far it can grow.
type Shape struct {
	VCPUs        uint32 `json:"vcpus"`
	MaxVCPUs     uint32 `json:"max_vcpus"`
	MemoryMiB    uint32 `json:"memory_mib"`
	MaxMemoryMiB uint32 `json:"max_memory_mib"`
	MemorySlots  uint32 `json:"memory_slots"`
}

// ShapeOf is cfg's shape.
func ShapeOf(cfg hypervisor.Config) Shape {
	return Shape{
		VCPUs: cfg.VCPUs, MaxVCPUs: max(cfg.MaxVCPUs, cfg.VCPUs),
		MemoryMiB: cfg.MemoryMiB, MaxMemoryMiB: max(cfg.MaxMemoryMiB, cfg.MemoryMiB),
		MemorySlots: cfg.MemorySlots,
	}
}

// Fits reports whether a VM of shape s can serve a sandbox that wants vcpus and memoryMiB:
// it is not bigger and can grow that far. Otherwise it says why.
func (s Shape) Fits(vcpus, memoryMiB uint32) error {
	switch {
	case vcpus < s.VCPUs:
		return fmt.Errorf("the sandbox wants %d vCPUs, fewer than the %d the VM has", vcpus, s.VCPUs)
	case vcpus > s.MaxVCPUs:
		return fmt.Errorf("the sandbox wants %d vCPUs, the VM can grow to %d", vcpus, s.MaxVCPUs)
	case memoryMiB < s.MemoryMiB:
		return fmt.Errorf("the sandbox wants %d MiB, less than the %d MiB the VM has", memoryMiB, s.MemoryMiB)
	case memoryMiB > s.MaxMemoryMiB:
		return fmt.Errorf("the sandbox wants %d MiB, the VM can grow to %d MiB", memoryMiB, s.MaxMemoryMiB)
	case memoryMiB > s.MemoryMiB && s.MaxMemoryMiB == s.MemoryMiB:
		return fmt.Errorf("the sandbox wants %d MiB, the VM has %d MiB and no memory hotplug", memoryMiB, s.MemoryMiB)
	}
	return nil
}

// apply sets cfg's sizes to s.
func (s Shape) apply(cfg *hypervisor.Config) {
	cfg.VCPUs, cfg.MaxVCPUs = s.VCPUs, s.MaxVCPUs
	cfg.MemoryMiB, cfg.MaxMemoryMiB, cfg.MemorySlots = s.MemoryMiB, s.MaxMemoryMiB, s.MemorySlots
}
