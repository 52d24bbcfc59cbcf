// Package config is Vessel's configuration.toml: typed sections for the hypervisor, the agent,
// the runtime and the VM factory, with defaults built into the binary, one validation error
// per bad field, and per-pod overrides through annotations (our io.vessel.config.* names and
// Kata's io.katacontainers.config.* names), which are refused unless the enable_annotations
// regexes allow them and, for paths, unless they match the configured globs.
//
// Every key is described once, in the key table (keys.go); validation, annotation parsing and
// the generated reference docs/configuration.md all read that table.
package config

//go:generate go run ./gendocs -o ../../docs/configuration.md

import (
	"reflect"
	"time"

	"github.com/vessel-containers/vessel/internal/hypervisor"
)

// Default file locations and environment.
const (
	// SystemPath is the configuration file read when neither --config nor VESSEL_CONFIG names one.
	SystemPath = "/etc/vessel/configuration.toml"
	// EnvVar names a configuration file; it is read when no explicit path is given.
	EnvVar = "VESSEL_CONFIG"
)

// Built-in defaults that other packages may want to name.
const (
	DefaultHypervisorPath = "/usr/bin/qemu-system-x86_64"
	DefaultKernel         = "/var/lib/vessel/guest/vmlinux"
	DefaultInitrd         = "/var/lib/vessel/guest/initramfs.img"
	DefaultVCPUs          = 1
	DefaultMemoryMiB      = 256
	DefaultMsize9P        = 524288
	// DefaultVirtioFSDaemon is where Debian's qemu-system-common installs virtiofsd.
	DefaultVirtioFSDaemon = "/usr/lib/qemu/virtiofsd"
	// DefaultVMMIDRange is the pool of host ids the VMMs of sandboxes run on by default:
	// from 0x70000000, 1024 slots of 65536 ids, far above the ids hosts give their users
	// and the ranges useradd delegates in /etc/subuid (vessel check reports overlaps).
	DefaultVMMIDRange = "1879048192-1946157055"
)

// Values of hypervisor.vmm_file_ids: the owners that the files an unprivileged VMM
// serves have on the host.
const (
	// VMMFileIDsContainer keeps the owners a container's files would have under runc:
	// the root file system and volumes reach the VMM through writable idmapped mounts.
	VMMFileIDsContainer = "container"
	// VMMFileIDsSandbox gives everything the guest creates to the sandbox's host ids.
	VMMFileIDsSandbox = "sandbox"
)

// Config is the whole configuration. The zero value is not useful: start from Default or Load.
type Config struct {
	Hypervisor Hypervisor `toml:"hypervisor"`
	Agent      Agent      `toml:"agent"`
	Runtime    Runtime    `toml:"runtime"`
	Factory    Factory    `toml:"factory"`
}

// Hypervisor is the [hypervisor] section: how the VM is built. Memory sizes are MiB.
type Hypervisor struct {
	Driver               string   `toml:"driver"`
	Path                 string   `toml:"path"`
	ValidHypervisorPaths []string `toml:"valid_hypervisor_paths"`
	Kernel               string   `toml:"kernel"`
	ValidKernelPaths     []string `toml:"valid_kernel_paths"`
	Initrd               string   `toml:"initrd"`
	Image                string   `toml:"image"`
	ValidImagePaths      []string `toml:"valid_image_paths"`
	KernelParams         string   `toml:"kernel_params"`

	MachineType         string                 `toml:"machine_type"`
	Accelerator         hypervisor.Accelerator `toml:"accelerator"`
	MachineAccelerators string                 `toml:"machine_accelerators"`
	CPUFeatures         string                 `toml:"cpu_features"`
	TBSizeMiB           uint32                 `toml:"tb_size_mib"`

	DefaultVCPUs      uint32   `toml:"default_vcpus"`
	DefaultMaxVCPUs   uint32   `toml:"default_maxvcpus"`
	DefaultMemory     uint32   `toml:"default_memory"`
	DefaultMaxMemory  uint32   `toml:"default_maxmemory"`
	MemorySlots       uint32   `toml:"memory_slots"`
	MemoryOffset      uint64   `toml:"memory_offset"`
	EnableVirtioMem   bool     `toml:"enable_virtio_mem"`
	EnableMemPrealloc bool     `toml:"enable_mem_prealloc"`
	EnableHugepages   bool     `toml:"enable_hugepages"`
	FileMemBackend    string   `toml:"file_mem_backend"`
	ValidFileMemBack  []string `toml:"valid_file_mem_backends"`
	EnableGuestSwap   bool     `toml:"enable_guest_swap"`
	EnableIOMMU       bool     `toml:"enable_iommu"`
	HotPlugVFIO       string   `toml:"hot_plug_vfio"`
	PCIeRootPort      uint32   `toml:"pcie_root_port"`

	SharedFS                 hypervisor.SharedFS `toml:"shared_fs"`
	CopySync                 string              `toml:"copy_sync"`
	VirtioFSDaemon           string              `toml:"virtio_fs_daemon"`
	ValidVirtioFSDaemonPaths []string            `toml:"valid_virtio_fs_daemon_paths"`
	VirtioFSCache            string              `toml:"virtio_fs_cache"`
	VirtioFSCacheSize        uint32              `toml:"virtio_fs_cache_size"`
	VirtioFSExtraArgs        []string            `toml:"virtio_fs_extra_args"`
	Msize9P                  uint32              `toml:"msize_9p"`

	BlockDeviceDriver         string `toml:"block_device_driver"`
	BlockDeviceAIO            string `toml:"block_device_aio"`
	BlockDeviceCacheSet       bool   `toml:"block_device_cache_set"`
	BlockDeviceCacheDirect    bool   `toml:"block_device_cache_direct"`
	BlockDeviceCacheNoflush   bool   `toml:"block_device_cache_noflush"`
	EnableIOThreads           bool   `toml:"enable_iothreads"`
	DisableBlockDeviceUse     bool   `toml:"disable_block_device_use"`
	DiskRateLimiterBwMaxRate  uint64 `toml:"disk_rate_limiter_bw_max_rate"`
	DiskRateLimiterOpsMaxRate uint64 `toml:"disk_rate_limiter_ops_max_rate"`
	DisableImageNvdimm        bool   `toml:"disable_image_nvdimm"`

	EntropySource       string   `toml:"entropy_source"`
	ValidEntropySources []string `toml:"valid_entropy_sources"`
	DisableVhostNet     bool     `toml:"disable_vhost_net"`
	UseVsock            bool     `toml:"use_vsock"`
	GuestHookPath       string   `toml:"guest_hook_path"`
	JailerPath          string   `toml:"jailer_path"`
	VMMIDRange          string   `toml:"vmm_id_range"`
	VMMFileIDs          string   `toml:"vmm_file_ids"`
	ValidJailerPaths    []string `toml:"valid_jailer_paths"`
	CtlPath             string   `toml:"ctlpath"`
	ValidCtlPaths       []string `toml:"valid_ctlpaths"`
	Rootless            bool     `toml:"rootless"`
	EnableDebug         bool     `toml:"enable_debug"`
}

// Agent is the [agent] section: the guest agent and how the host talks to it. Timeouts are
// seconds.
type Agent struct {
	KernelModules          []string `toml:"kernel_modules"`
	DialTimeout            uint32   `toml:"dial_timeout"`
	RequestTimeout         uint32   `toml:"request_timeout"`
	CreateContainerTimeout uint32   `toml:"create_container_timeout"`
	EnableTracing          bool     `toml:"enable_tracing"`
	EnableDebug            bool     `toml:"enable_debug"`
	DebugConsoleEnabled    bool     `toml:"debug_console_enabled"`
	ContainerPipeSize      uint32   `toml:"container_pipe_size"`
	PolicyFile             string   `toml:"policy_file"`
}

// Runtime is the [runtime] section: host-side behaviour of the shim.
type Runtime struct {
	EnableDebug               bool     `toml:"enable_debug"`
	SandboxCgroupOnly         bool     `toml:"sandbox_cgroup_only"`
	DisableGuestSeccomp       bool     `toml:"disable_guest_seccomp"`
	InternetworkingModel      string   `toml:"internetworking_model"`
	DisableNewNetNS           bool     `toml:"disable_new_netns"`
	StaticSandboxResourceMgmt bool     `toml:"static_sandbox_resource_mgmt"`
	Experimental              []string `toml:"experimental"`
	EnableAnnotations         []string `toml:"enable_annotations"`
	OTLPEndpoint              string   `toml:"otlp_endpoint"`
}

// Factory is the [factory] section: VM templating and the pre-booted VM cache.
type Factory struct {
	EnableTemplate  bool   `toml:"enable_template"`
	TemplatePath    string `toml:"template_path"`
	VMCacheNumber   uint32 `toml:"vm_cache_number"`
	VMCacheEndpoint string `toml:"vm_cache_endpoint"`
}

// Default returns the built-in configuration. Lists are empty rather than nil so that the
// printed configuration shows every key.
func Default() *Config {
	return &Config{
		Hypervisor: Hypervisor{
			Driver:               "qemu",
			Path:                 DefaultHypervisorPath,
			ValidHypervisorPaths: []string{DefaultHypervisorPath},
			Kernel:               DefaultKernel,
			ValidKernelPaths:     []string{"/var/lib/vessel/guest/*"},
			Initrd:               DefaultInitrd,
			ValidImagePaths:      []string{"/var/lib/vessel/guest/*"},
			KernelParams:         "",
			MachineType:          "q35",
			Accelerator:          hypervisor.AccelAuto,
			DefaultVCPUs:         DefaultVCPUs,
			DefaultMemory:        DefaultMemoryMiB,
			MemorySlots:          10,
			ValidFileMemBack:     []string{},
			HotPlugVFIO:          "no-port",
			SharedFS:             hypervisor.SharedFS9P,
			CopySync:             "all",
			VirtioFSDaemon:       DefaultVirtioFSDaemon,
			ValidVirtioFSDaemonPaths: []string{
				DefaultVirtioFSDaemon,
			},
			VirtioFSCache:       "auto",
			VirtioFSExtraArgs:   []string{},
			Msize9P:             DefaultMsize9P,
			BlockDeviceDriver:   "virtio-blk",
			BlockDeviceAIO:      "threads",
			DisableImageNvdimm:  true,
			EntropySource:       "/dev/urandom",
			ValidEntropySources: []string{"/dev/urandom", "/dev/random"},
			ValidJailerPaths:    []string{},
			VMMIDRange:          DefaultVMMIDRange,
			VMMFileIDs:          VMMFileIDsContainer,
			ValidCtlPaths:       []string{},
		},
		Agent: Agent{
			KernelModules:          []string{},
			DialTimeout:            45,
			RequestTimeout:         30,
			CreateContainerTimeout: 60,
		},
		Runtime: Runtime{
			InternetworkingModel:      "tcfilter",
			StaticSandboxResourceMgmt: true,
			Experimental:              []string{},
			EnableAnnotations:         []string{},
		},
		Factory: Factory{
			TemplatePath:    "/run/vessel/template",
			VMCacheEndpoint: "/run/vessel/cache.sock",
		},
	}
}

// Clone returns a deep copy: lists are copied, so changing the copy never changes c.
func (c *Config) Clone() *Config {
	out := *c
	v := reflect.ValueOf(&out).Elem()
	for i := 0; i < v.NumField(); i++ {
		sec := v.Field(i)
		for j := 0; j < sec.NumField(); j++ {
			f := sec.Field(j)
			if f.Kind() == reflect.Slice && !f.IsNil() {
				cp := reflect.MakeSlice(f.Type(), f.Len(), f.Len())
				reflect.Copy(cp, f)
				f.Set(cp)
			}
		}
	}
	return &out
}

// DialTimeoutDuration is agent.dial_timeout as a duration.
func (a *Agent) DialTimeoutDuration() time.Duration { return seconds(a.DialTimeout) }

// RequestTimeoutDuration is agent.request_timeout as a duration.
func (a *Agent) RequestTimeoutDuration() time.Duration { return seconds(a.RequestTimeout) }

// CreateContainerTimeoutDuration is agent.create_container_timeout as a duration.
func (a *Agent) CreateContainerTimeoutDuration() time.Duration {
	return seconds(a.CreateContainerTimeout)
}

func seconds(n uint32) time.Duration { return time.Duration(n) * time.Second }
