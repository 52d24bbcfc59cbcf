package config

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"path"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/vessel-containers/vessel/internal/idrange"
)

// Key describes one configuration key: its TOML name, what it accepts and whether an
// annotation may override it. The key table is the single source for validation, annotation
// parsing and the generated reference.
type Key struct {
	// Section and Name form the TOML key: [Section] Name = ...
	Section string
	Name    string
	// Type is the documented value type: bool, uint32, uint64, string, path or []string.
	Type string
	// Unit of integers (MiB, seconds, bytes), if any.
	Unit string
	// Doc says what the key does.
	Doc string

	// Min and Max bound integers (inclusive).
	Min, Max uint64
	// Enum lists the accepted strings; empty means any string that check accepts.
	Enum []string
	// Allowed describes accepted strings (or list elements) in words when check does more
	// than Enum can say.
	Allowed string
	// Optional strings and paths may be empty.
	Optional bool

	// Annotation is the base name of the annotation overriding this key, e.g. "default_vcpus"
	// for io.vessel.config.hypervisor.default_vcpus; empty when no annotation may.
	Annotation string
	// syntax tells how a list is written in an annotation value.
	syntax listSyntax
	// Append makes an annotation value append to the configured value instead of replacing it.
	Append bool
	// Replaces names the key (in the same section) that an annotation for this key empties:
	// the two are alternatives, like initrd and image.
	Replaces string
	// Globs names the key (in the same section) listing the glob patterns an annotation value
	// must match. Annotations overriding such a key are refused when no pattern matches.
	Globs string

	// Consumer names the function that applies the key: "pkg.Func" or "pkg.Type.Method", a
	// function in a package under internal/ that reads the key's Config field (for the glob
	// lists: config.Config.matchGlobs, which reads them through Key.Globs). TestConsumers
	// parses the source to check it.
	Consumer string
	// Unsupported says why the key is not applied, when it is not: any value but the
	// default is refused with this reason. A key has a Consumer or is Unsupported.
	Unsupported string
	// UnsupportedValues are Enum values that are refused, each with its reason; the other
	// values are applied by Consumer.
	UnsupportedValues map[string]string

	// check validates one string value or one list element.
	check func(string) error
}

// Reasons shared by several unsupported keys.
const (
	noDAX              = "the virtio-fs DAX window needs vhost-user-fs-pci cache-size, which QEMU 7.2 (Debian 12) does not have"
	noVirtioFSMetadata = "the C virtiofsd of QEMU 7.2 has no metadata cache mode (it has none, auto and always: never, auto and always here)"
	noImages           = "guest disk images are not built yet: the VM boots from hypervisor.initrd"
	noFileMemory       = "file-backed guest memory is not built yet"
	noJailer           = "no external jailer is run: the qemu driver confines QEMU itself (internal/jail)"
	noCtl              = "no driver in this Vessel uses a control binary (cloud-hypervisor's ch-remote)"
)

// listSyntax is how an annotation writes a list.
type listSyntax int

const (
	listNone      listSyntax = iota
	listSemicolon            // "a x=1; b"
	listComma                // "a,b"
	listJSON                 // ["--a", "--b"]
)

func (s listSyntax) String() string {
	switch s {
	case listSemicolon:
		return "semicolon-separated list"
	case listComma:
		return "comma-separated list"
	case listJSON:
		return "JSON array of strings"
	}
	return ""
}

// FullName is "section.name".
func (k Key) FullName() string { return k.Section + "." + k.Name }

// AnnotationNames are the annotation names overriding the key, ours first; nil when none.
func (k Key) AnnotationNames() []string {
	if k.Annotation == "" {
		return nil
	}
	short := k.Section + "." + k.Annotation
	return []string{PrefixVessel + short, PrefixKata + short}
}

// AnnotationType is how an annotation value for the key is written.
func (k Key) AnnotationType() string {
	switch {
	case k.Annotation == "":
		return ""
	case k.syntax != listNone:
		return k.syntax.String()
	case k.Append:
		return k.Type + " (appended)"
	}
	return k.Type
}

// DefaultValue is the built-in value, written as in TOML.
func (k Key) DefaultValue() string {
	return formatValue(fieldOf(reflect.ValueOf(Default()).Elem(), k))
}

// Supported reports whether the key is applied. A supported enum key may still refuse some
// values (UnsupportedValues).
func (k Key) Supported() bool { return k.Unsupported == "" }

// SupportText says in words whether the key is applied: "yes", "no: <reason>", or which
// values are refused and why.
func (k Key) SupportText() string {
	if k.Unsupported != "" {
		return "no: " + k.Unsupported
	}
	if len(k.UnsupportedValues) == 0 {
		return "yes"
	}
	var refused []string
	for _, v := range k.Enum {
		if r, ok := k.UnsupportedValues[v]; ok {
			refused = append(refused, fmt.Sprintf("%q (%s)", v, r))
		}
	}
	return "only " + quoteAll(k.supportedValues()) + "; refused: " + strings.Join(refused, ", ")
}

// supportedValues are the Enum values not refused by UnsupportedValues.
func (k Key) supportedValues() []string {
	var out []string
	for _, v := range k.Enum {
		if _, bad := k.UnsupportedValues[v]; !bad {
			out = append(out, v)
		}
	}
	return out
}

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}

// AllowedText describes the accepted values for documentation and error messages.
func (k Key) AllowedText() string {
	switch {
	case k.Type == "bool":
		return "true or false"
	case k.Type == "uint32" || k.Type == "uint64":
		return fmt.Sprintf("%d to %d", k.Min, k.Max)
	case len(k.Enum) > 0:
		return "one of " + quoteAll(k.Enum)
	}
	s := k.Allowed
	if k.Optional && k.Type != "[]string" {
		s += " or empty"
	}
	return s
}

const (
	maxUint32 = math.MaxUint32
	// maxKernelCmdline is x86's COMMAND_LINE_SIZE less room for the driver's own parameters.
	maxKernelCmdline = 1024
	// maxVCPUs is QEMU q35's limit with the x2APIC it enables by default.
	maxVCPUs = 288
	// maxMemoryMiB bounds memory sizes at 4 TiB.
	maxMemoryMiB = 4 << 20
)

var (
	reMachineType = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)
	// reQEMUOpts is a comma-separated list of QEMU option words, nothing QEMU could read as a
	// new argument or a file.
	reQEMUOpts = regexp.MustCompile(`^[A-Za-z0-9_.+=-]+(,[A-Za-z0-9_.+=-]+)*$`)
	// reMachineOpts is a comma-separated list of key=value machine properties: QEMU 7.2
	// refuses bare words such as "nosmm" after -machine.
	reMachineOpts = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]*=[A-Za-z0-9_.+-]+(,[a-z0-9][a-z0-9_.-]*=[A-Za-z0-9_.+-]+)*$`)
	reModule      = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	reFeature     = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
	reModParam    = regexp.MustCompile(`^[A-Za-z0-9_.-]+(=[^\s;]*)?$`)
	reExtraArg    = regexp.MustCompile(`^--[a-z0-9][a-z0-9-]*(=[^\s]*)?$`)
	reForbidArg   = regexp.MustCompile(`^--(shared-dir|socket-path|socket-group|fd|sandbox|seccomp|syslog|daemonize|rlimit-nofile|print-capabilities|help|version)(=|$)`)
)

func checkAbsPath(s string) error {
	switch {
	case !path.IsAbs(s):
		return errors.New("not an absolute path")
	case path.Clean(s) != s:
		return fmt.Errorf("not a clean path (want %q)", path.Clean(s))
	case strings.ContainsAny(s, "\x00\n,"):
		return errors.New("contains a NUL, newline or comma")
	}
	return nil
}

// checkOTLPEndpoint accepts an http or https URL with a host and no credentials, query
// or fragment.
func checkOTLPEndpoint(s string) error {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return fmt.Errorf("not a URL: %w", err)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("scheme %q: want http or https", u.Scheme)
	case u.Host == "":
		return errors.New("no host")
	case u.User != nil || u.RawQuery != "" || u.Fragment != "":
		return errors.New("credentials, a query or a fragment are not accepted")
	}
	return nil
}

func checkPattern(re *regexp.Regexp) func(string) error {
	return func(s string) error {
		if !re.MatchString(s) {
			return fmt.Errorf("does not match %s", re)
		}
		return nil
	}
}

func checkIDRange(s string) error {
	_, err := idrange.ParsePool(s)
	return err
}

func checkGlob(s string) error {
	if !path.IsAbs(s) || strings.ContainsRune(s, 0) {
		return errors.New("not an absolute path pattern")
	}
	if _, err := path.Match(s, ""); err != nil {
		return fmt.Errorf("bad pattern: %w", err)
	}
	return nil
}

func checkRegexp(s string) error {
	if _, err := compileAnchored(s); err != nil {
		return fmt.Errorf("bad regexp: %w", err)
	}
	return nil
}

// reservedKernelParams are kernel parameters the driver and the guest agent set themselves;
// kernelParamPrefix starts the agent's own parameters.
var reservedKernelParams = []string{"console", "panic", "init", "rdinit"}

const kernelParamPrefix = "vessel."

func checkKernelParams(s string) error {
	if len(s) > maxKernelCmdline {
		return fmt.Errorf("%d bytes is longer than %d", len(s), maxKernelCmdline)
	}
	for _, r := range s {
		if r < 0x20 && r != ' ' && r != '\t' || r == 0x7f || r > 0x7e {
			return errors.New("contains a control or non-ASCII character")
		}
	}
	for _, p := range strings.Fields(s) {
		// The kernel reads a leading quote as the start of a quoted "name=value".
		name, _, _ := strings.Cut(strings.TrimLeft(p, `"`), "=")
		switch {
		case slices.Contains(reservedKernelParams, name):
			return fmt.Errorf("parameter %s is set by Vessel (%s= may not be set)", p, name)
		case strings.HasPrefix(name, kernelParamPrefix):
			return fmt.Errorf("parameter %s is set by Vessel (%s* parameters belong to the guest agent)", p, kernelParamPrefix)
		}
	}
	return nil
}

// checkMachineOpts accepts key=value machine properties other than the ones the driver
// sets itself.
func checkMachineOpts(s string) error {
	if !reMachineOpts.MatchString(s) {
		return fmt.Errorf("does not match %s", reMachineOpts)
	}
	for _, o := range strings.Split(s, ",") {
		if name, _, _ := strings.Cut(o, "="); name == "memory-backend" || name == "accel" || name == "type" {
			return fmt.Errorf("property %s is set by Vessel", name)
		}
	}
	return nil
}

func checkKernelModule(s string) error {
	f := strings.Fields(s)
	if len(f) == 0 {
		return errors.New("names no module")
	}
	if !reModule.MatchString(f[0]) {
		return fmt.Errorf("module name %q does not match %s", f[0], reModule)
	}
	for _, p := range f[1:] {
		if !reModParam.MatchString(p) {
			return fmt.Errorf("module parameter %q does not match %s", p, reModParam)
		}
	}
	return nil
}

func checkExtraArg(s string) error {
	if !reExtraArg.MatchString(s) {
		return errors.New("not a --long-option[=value]")
	}
	if reForbidArg.MatchString(s) {
		return errors.New("option is set by Vessel itself")
	}
	return nil
}

// keyTable is every configuration key. It is never modified; Keys returns a copy.
var keyTable = []Key{
	// [hypervisor] binaries and guest assets.
	{Section: "hypervisor", Name: "driver",
		Consumer: "factory.ConfigFor", UnsupportedValues: map[string]string{"firecracker": "driver firecracker is not built into this Vessel", "cloud-hypervisor": "driver cloud-hypervisor is not built into this Vessel"}, Type: "string", Enum: []string{"qemu", "firecracker", "cloud-hypervisor"},
		Doc: "Hypervisor driver that runs the VM."},
	{Section: "hypervisor", Name: "path",
		Consumer: "oci.HypervisorConfig", Type: "path", Allowed: "absolute path", check: checkAbsPath,
		Annotation: "path", Globs: "valid_hypervisor_paths",
		Doc: "Hypervisor binary."},
	{Section: "hypervisor", Name: "valid_hypervisor_paths",
		Consumer: "config.Config.matchGlobs", Type: "[]string", Allowed: "absolute glob patterns", check: checkGlob, Optional: true,
		Doc: "Glob patterns a hypervisor path annotation must match; empty refuses every such annotation."},
	{Section: "hypervisor", Name: "kernel",
		Consumer: "oci.HypervisorConfig", Type: "path", Allowed: "absolute path", check: checkAbsPath,
		Annotation: "kernel", Globs: "valid_kernel_paths",
		Doc: "Guest kernel: an uncompressed vmlinux (booted through PVH) or a bzImage."},
	{Section: "hypervisor", Name: "valid_kernel_paths",
		Consumer: "config.Config.matchGlobs", Type: "[]string", Allowed: "absolute glob patterns", check: checkGlob, Optional: true,
		Doc: "Glob patterns a kernel annotation must match."},
	{Section: "hypervisor", Name: "initrd",
		Consumer: "oci.HypervisorConfig", Type: "path", Allowed: "absolute path", check: checkAbsPath, Optional: true,
		Annotation: "initrd", Globs: "valid_image_paths", Replaces: "image",
		Doc: "Guest initramfs holding the agent. Exactly one of initrd and image is set; an annotation setting one empties the other."},
	{Section: "hypervisor", Name: "image",
		Unsupported: noImages, Type: "path", Allowed: "absolute path", check: checkAbsPath, Optional: true,
		Annotation: "image", Globs: "valid_image_paths", Replaces: "initrd",
		Doc: "Guest root disk image, instead of an initrd."},
	{Section: "hypervisor", Name: "valid_image_paths",
		Consumer: "config.Config.matchGlobs", Type: "[]string", Allowed: "absolute glob patterns", check: checkGlob, Optional: true,
		Doc: "Glob patterns an initrd or image annotation must match."},
	{Section: "hypervisor", Name: "kernel_params",
		Consumer: "oci.HypervisorConfig", Type: "string", Allowed: fmt.Sprintf("printable ASCII, at most %d bytes, setting none of %s= or %s*", maxKernelCmdline, strings.Join(reservedKernelParams, "=, "), kernelParamPrefix), check: checkKernelParams, Optional: true,
		Annotation: "kernel_params", Append: true,
		Doc: "Space-separated parameters appended to the guest kernel command line. An annotation appends to this value."},

	// [hypervisor] machine.
	{Section: "hypervisor", Name: "machine_type",
		Consumer: "oci.HypervisorConfig", Type: "string", Allowed: "a QEMU machine name (" + reMachineType.String() + ")", check: checkPattern(reMachineType), Optional: true,
		Annotation: "machine_type",
		Doc:        "Machine type: q35 (the default when empty) or microvm (QEMU's microvm: virtio-mmio devices, no PCI, a shorter boot; no hotplug, so default_maxvcpus and default_maxmemory act as default_vcpus and default_memory, and templates, virtio-scsi, disk attach and NIC attach or detach are refused; see docs/benchmarks.md)."},
	{Section: "hypervisor", Name: "accelerator",
		Consumer: "oci.HypervisorConfig", Type: "string", Enum: []string{"auto", "kvm", "tcg"},
		Annotation: "accelerator",
		Doc:        "How guest code runs: kvm, tcg (software emulation), or auto (kvm when /dev/kvm is usable)."},
	{Section: "hypervisor", Name: "machine_accelerators",
		Consumer: "oci.HypervisorConfig", Type: "string", Allowed: "comma-separated key=value machine properties (" + reMachineOpts.String() + "), not memory-backend, accel or type", check: checkMachineOpts, Optional: true,
		Annotation: "machine_accelerators",
		Doc:        "Extra machine properties appended to QEMU's -machine, e.g. \"smm=off,hpet=off\"."},
	{Section: "hypervisor", Name: "cpu_features",
		Consumer: "oci.HypervisorConfig", Type: "string", Allowed: "comma-separated option words (" + reQEMUOpts.String() + ")", check: checkPattern(reQEMUOpts), Optional: true,
		Annotation: "cpu_features",
		Doc:        "CPU features appended to the guest CPU model (QEMU's -cpu host under KVM, max under TCG), e.g. \"pmu=off\"."},
	{Section: "hypervisor", Name: "tb_size_mib",
		Consumer: "oci.HypervisorConfig", Type: "uint32", Unit: "MiB", Min: 0, Max: 4096,
		Doc: "QEMU TCG translation-cache size; 0 lets the driver choose: 64 MiB, or 256 MiB for a VM that can gain vCPUs by hot-plug (QEMU 7.2 aborts when a hot-plugged vCPU finds every cache region taken; larger regions make that need far more translated code). Ignored under KVM."},

	// [hypervisor] CPU and memory.
	{Section: "hypervisor", Name: "default_vcpus",
		Consumer: "config.Config.Limits", Type: "uint32", Min: 1, Max: maxVCPUs,
		Annotation: "default_vcpus",
		Doc:        "vCPUs of a VM before any container's CPU limit is added. Above the effective maximum it is lowered to it. An annotation must not exceed the host's CPUs or the maximum."},
	{Section: "hypervisor", Name: "default_maxvcpus",
		Consumer: "config.Config.Limits", Type: "uint32", Min: 0, Max: maxVCPUs,
		Annotation: "default_max_vcpus",
		Doc:        "Most vCPUs a VM may have (hotplug and sizing cap); 0 or more than the host's CPUs means the host's CPUs."},
	{Section: "hypervisor", Name: "default_memory",
		Consumer: "config.Config.Limits", Type: "uint32", Unit: "MiB", Min: 64, Max: maxMemoryMiB,
		Annotation: "default_memory",
		Doc:        "Memory of a VM before any container's memory limit is added. An annotation must not exceed the effective maximum."},
	{Section: "hypervisor", Name: "default_maxmemory",
		Consumer: "config.Config.Limits", Type: "uint32", Unit: "MiB", Min: 0, Max: maxMemoryMiB,
		Doc: "Most memory a VM may have; 0 or more than the host's RAM means the host's RAM."},
	{Section: "hypervisor", Name: "memory_slots",
		Consumer: "oci.HypervisorConfig", Type: "uint32", Min: 1, Max: 255,
		Annotation: "memory_slots",
		Doc:        "Memory hotplug slots: how many times memory can be added to a running VM."},
	{Section: "hypervisor", Name: "memory_offset",
		Unsupported: "nvdimm devices are not built yet: nothing uses address space beyond the maximum memory", Type: "uint64", Unit: "MiB", Min: 0, Max: maxMemoryMiB,
		Annotation: "memory_offset",
		Doc:        "Extra address space added to the maximum memory, for nvdimm devices."},
	{Section: "hypervisor", Name: "enable_virtio_mem",
		Unsupported: "virtio-mem is not built: memory is added and taken back as DIMMs (docs/host-cgroups.md says why)", Type: "bool", Annotation: "enable_virtio_mem",
		Doc: "Resize memory with virtio-mem instead of DIMM hotplug."},
	{Section: "hypervisor", Name: "enable_mem_prealloc",
		Consumer: "oci.HypervisorConfig", Type: "bool", Annotation: "enable_mem_prealloc",
		Doc: "Allocate all guest memory at boot (lower density, predictable latency)."},
	{Section: "hypervisor", Name: "enable_hugepages",
		Unsupported: "backing guest memory with the host's huge pages is not built (hugetlbfs volumes in containers work without it: the guest reserves huge pages of its own)", Type: "bool", Annotation: "enable_hugepages",
		Doc: "Back guest memory with huge pages (implies preallocation)."},
	{Section: "hypervisor", Name: "file_mem_backend",
		Unsupported: noFileMemory, Type: "path", Allowed: "absolute path", check: checkAbsPath, Optional: true,
		Annotation: "file_mem_backend", Globs: "valid_file_mem_backends",
		Doc: "Directory for file-backed guest memory; empty disables it. Ignored when templating is on."},
	{Section: "hypervisor", Name: "valid_file_mem_backends",
		Unsupported: noFileMemory, Type: "[]string", Allowed: "absolute glob patterns", check: checkGlob, Optional: true,
		Doc: "Glob patterns a file_mem_backend annotation must match."},
	{Section: "hypervisor", Name: "enable_guest_swap",
		Unsupported: "guest swap is not built yet: nothing gives the guest a swap device", Type: "bool", Annotation: "enable_guest_swap",
		Doc: "Give the guest a swap device when a container asks for swap."},
	{Section: "hypervisor", Name: "enable_iommu",
		Unsupported: "a virtual IOMMU is not built yet: no VFIO device is passed to the guest", Type: "bool", Annotation: "enable_iommu",
		Doc: "Add a virtual IOMMU (q35), needed for VFIO devices in the guest."},
	{Section: "hypervisor", Name: "hot_plug_vfio",
		Unsupported: "VFIO device hotplug is not built yet", Type: "string", Enum: []string{"no-port", "root-port", "bridge-port", "switch-port"},
		Annotation: "hot_plug_vfio",
		Doc:        "Where VFIO devices are hot-plugged; no-port disables VFIO hotplug."},
	{Section: "hypervisor", Name: "pcie_root_port",
		Unsupported: "PCIe device hotplug is not built yet: nothing is plugged into root ports", Type: "uint32", Min: 0, Max: 16,
		Annotation: "pcie_root_port",
		Doc:        "PCIe root ports added at boot for hot-plugging PCIe devices."},

	// [hypervisor] shared file system.
	{Section: "hypervisor", Name: "shared_fs",
		Consumer: "oci.HypervisorConfig", Type: "string", Enum: []string{"virtio-9p", "virtio-fs", "none"},
		Annotation: "shared_fs",
		Doc:        "How host files reach the guest: virtio-9p (QEMU's 9p server), virtio-fs (one virtiofsd per VM), or none (copy mode: no shared file system; the root file system and volumes are copied into the guest's memory, and volumes are kept in sync as copy_sync says). See docs/shared-fs.md."},
	{Section: "hypervisor", Name: "copy_sync",
		Consumer: "sandbox.copySync", Type: "string", Enum: []string{"all", "kubernetes", "none"},
		Annotation: "copy_sync",
		Doc:        "With shared_fs = \"none\": which volumes are kept in sync with the host after they are copied in (host changes reach the guest within about a second; the guest's writes never reach the host): all (every volume), kubernetes (only Kubernetes ConfigMap, Secret, downward API and projected volumes, recognised by their kubelet path <kubelet root>/pods/<uid>/volumes/kubernetes.io~<kind>/<name>), none. The root file system is copied once and never synced."},
	{Section: "hypervisor", Name: "virtio_fs_daemon",
		Consumer: "oci.VirtioFSD", Type: "path", Allowed: "absolute path", check: checkAbsPath, Optional: true,
		Annotation: "virtio_fs_daemon", Globs: "valid_virtio_fs_daemon_paths",
		Doc: "virtiofsd binary (the C virtiofsd of QEMU; Debian 12 installs it with qemu-system-common); required when shared_fs is virtio-fs."},
	{Section: "hypervisor", Name: "valid_virtio_fs_daemon_paths",
		Consumer: "config.Config.matchGlobs", Type: "[]string", Allowed: "absolute glob patterns", check: checkGlob, Optional: true,
		Doc: "Glob patterns a virtio_fs_daemon annotation must match."},
	{Section: "hypervisor", Name: "virtio_fs_cache",
		Consumer: "oci.VirtioFSD", UnsupportedValues: map[string]string{"metadata": noVirtioFSMetadata}, Type: "string", Enum: []string{"never", "metadata", "auto", "always"},
		Annotation: "virtio_fs_cache",
		Doc:        "virtio-fs guest caching (virtiofsd -o cache=): never (none); auto (cached for a short time, data while open); always (host changes to what the guest looked up, such as ConfigMap updates, are not seen). metadata is a mode of the Rust virtiofsd only."},
	{Section: "hypervisor", Name: "virtio_fs_cache_size",
		Unsupported: noDAX, Type: "uint32", Unit: "MiB", Min: 0, Max: 65536,
		Annotation: "virtio_fs_cache_size",
		Doc:        "virtio-fs DAX window; 0 disables DAX."},
	{Section: "hypervisor", Name: "virtio_fs_extra_args",
		Consumer: "oci.VirtioFSD", Type: "[]string", Allowed: "--long-option[=value] words, not ones Vessel sets (--fd, --socket-path, --shared-dir, --sandbox, --syslog, --daemonize, --rlimit-nofile, ...)", check: checkExtraArg, Optional: true,
		Annotation: "virtio_fs_extra_args", syntax: listJSON,
		Doc: "Extra virtiofsd options, after the ones Vessel sets (e.g. --thread-pool-size=4)."},
	{Section: "hypervisor", Name: "msize_9p",
		Consumer: "oci.HypervisorConfig", Type: "uint32", Unit: "bytes", Min: 4096, Max: 1048576,
		Annotation: "msize_9p",
		Doc:        "9p message size."},

	// [hypervisor] block devices.
	{Section: "hypervisor", Name: "block_device_driver",
		Consumer: "oci.HypervisorConfig", UnsupportedValues: map[string]string{
			"nvdimm": "nvdimm disks are not supported yet: disks are attached as virtio-blk or virtio-scsi",
		}, Type: "string", Enum: []string{"virtio-blk", "virtio-scsi", "nvdimm"},
		Annotation: "block_device_driver",
		Doc:        "Driver for block devices given to the guest (host block devices in linux.devices, block-device volumes): virtio-blk (a PCI device per disk) or virtio-scsi (one controller per VM, a SCSI disk per disk)."},
	{Section: "hypervisor", Name: "block_device_aio",
		Consumer: "oci.HypervisorConfig", Type: "string", Enum: []string{"threads", "native", "io_uring"},
		Doc: "Host I/O mechanism for block devices: threads (everywhere), native (Linux AIO; needs block_device_cache_set and block_device_cache_direct), io_uring (where the host kernel and QEMU have it; refused when a disk is attached otherwise)."},
	{Section: "hypervisor", Name: "block_device_cache_set",
		Consumer: "oci.HypervisorConfig", Type: "bool", Annotation: "block_device_cache_set",
		Doc: "Apply the block_device_cache_* settings to block devices (otherwise: host page cache, flushes honoured)."},
	{Section: "hypervisor", Name: "block_device_cache_direct",
		Consumer: "oci.HypervisorConfig", Type: "bool", Annotation: "block_device_cache_direct",
		Doc: "Open block devices with O_DIRECT (bypass the host page cache); with block_device_cache_set."},
	{Section: "hypervisor", Name: "block_device_cache_noflush",
		Consumer: "oci.HypervisorConfig", Type: "bool", Annotation: "block_device_cache_noflush",
		Doc: "Ignore flush requests from the guest; with block_device_cache_set."},
	{Section: "hypervisor", Name: "enable_iothreads",
		Unsupported: "I/O threads are not supported yet: QEMU's main loop handles block I/O", Type: "bool", Annotation: "enable_iothreads",
		Doc: "Handle block I/O in a separate thread (virtio-scsi)."},
	{Section: "hypervisor", Name: "disable_block_device_use",
		Consumer: "oci.RootfsDisk", Type: "bool", Annotation: "disable_block_device_use",
		Doc: "Never pass a disk rootfs (devmapper or blockfile snapshots) to the guest as a disk; mount it on the host and share it as files instead."},
	{Section: "hypervisor", Name: "disk_rate_limiter_bw_max_rate",
		Consumer: "oci.HypervisorConfig", Type: "uint64", Unit: "bits/s", Min: 0, Max: 1 << 50,
		Doc: "Per-disk I/O bandwidth limit, reads and writes together (QEMU throttle group bps-total = this / 8); 0 means unlimited."},
	{Section: "hypervisor", Name: "disk_rate_limiter_ops_max_rate",
		Consumer: "oci.HypervisorConfig", Type: "uint64", Unit: "ops/s", Min: 0, Max: 1 << 40,
		Doc: "Per-disk I/O operations limit, reads and writes together (QEMU throttle group iops-total); 0 means unlimited."},
	{Section: "hypervisor", Name: "disable_image_nvdimm",
		Unsupported: noImages, Type: "bool", Annotation: "disable_image_nvdimm",
		Doc: "Attach a guest image as virtio-blk instead of nvdimm."},

	// [hypervisor] devices, isolation and debugging.
	{Section: "hypervisor", Name: "entropy_source",
		Consumer: "oci.HypervisorConfig", Type: "path", Allowed: "absolute path", check: checkAbsPath,
		Annotation: "entropy_source", Globs: "valid_entropy_sources",
		Doc: "Host entropy source behind the guest's virtio-rng device."},
	{Section: "hypervisor", Name: "valid_entropy_sources",
		Consumer: "config.Config.matchGlobs", Type: "[]string", Allowed: "absolute glob patterns", check: checkGlob, Optional: true,
		Doc: "Glob patterns an entropy_source annotation must match."},
	{Section: "hypervisor", Name: "disable_vhost_net",
		Consumer: "oci.networkPlan", Type: "bool", Annotation: "disable_vhost_net",
		Doc: "Run virtio-net in the hypervisor process instead of the vhost-net kernel module (vhost-net is used only where /dev/vhost-net exists)."},
	{Section: "hypervisor", Name: "use_vsock",
		Unsupported: "vsock is not built yet: the agent is reached over virtio-serial", Type: "bool", Annotation: "use_vsock",
		Doc: "Reach the agent over vsock (needs vhost-vsock); false uses virtio-serial."},
	{Section: "hypervisor", Name: "guest_hook_path",
		Consumer: "sandbox.Sandbox.setup", Type: "path", Allowed: "absolute path in the guest", check: checkAbsPath, Optional: true,
		Annotation: "guest_hook_path",
		Doc:        "Directory in the guest holding OCI hooks (prestart, poststart, poststop subdirectories): the agent runs every executable file there, as Kata does, for each container created in the sandbox, with the container's state on stdin (docs/debugging.md)."},
	{Section: "hypervisor", Name: "jailer_path",
		Unsupported: noJailer, Type: "path", Allowed: "absolute path", check: checkAbsPath, Optional: true,
		Annotation: "jailer_path", Globs: "valid_jailer_paths",
		Doc: "Jailer binary confining the VMM (firecracker); empty runs no jailer."},
	{Section: "hypervisor", Name: "valid_jailer_paths",
		Unsupported: noJailer, Type: "[]string", Allowed: "absolute glob patterns", check: checkGlob, Optional: true,
		Doc: "Glob patterns a jailer_path annotation must match."},
	{Section: "hypervisor", Name: "ctlpath",
		Unsupported: noCtl, Type: "path", Allowed: "absolute path", check: checkAbsPath, Optional: true,
		Annotation: "ctlpath", Globs: "valid_ctlpaths",
		Doc: "Hypervisor control binary (cloud-hypervisor's ch-remote); empty means none."},
	{Section: "hypervisor", Name: "valid_ctlpaths",
		Unsupported: noCtl, Type: "[]string", Allowed: "absolute glob patterns", check: checkGlob, Optional: true,
		Doc: "Glob patterns a ctlpath annotation must match."},
	{Section: "hypervisor", Name: "vmm_id_range",
		Consumer: "oci.vmmIDPool", Type: "string", Allowed: "START-END: host ids, START >= 65536, at least 65536 of them", check: checkIDRange, Optional: true,
		Doc: "Host uids and gids for unprivileged VMMs: each sandbox takes 65536 of them, its QEMU runs in a user namespace mapped onto them, and containers' root file systems and volumes are idmapped into it as vmm_file_ids says (container: files keep their host owners, as under runc; sandbox: nothing the guest creates is owned by a host user outside these ids). The default, from 0x70000000 for 1024 sandboxes, jails every VMM of a root runtime this way (vessel check reports ids of the pool that /etc/subuid, /etc/subgid, users, groups or processes use); vmm_id_range = \"\" turns it off and runs QEMU as root (confined by capabilities and seccomp only). Rootless mode does not apply it. Cached VMs (factory.vm_cache_number) boot on ids of their own, handed over with the VM; VM templates need QEMU 8.2 or newer (it opens the template read-only) and are refused naming both keys and the QEMU version otherwise: on QEMU 7.2 (Debian 12) set vmm_id_range = \"\" to use templates. With virtio-fs, virtiofsd runs in a user namespace on the same ids (docs/security.md)."},
	{Section: "hypervisor", Name: "vmm_file_ids",
		Consumer: "sandbox.Sandbox.FileIDsMapped", Type: "string", Enum: []string{VMMFileIDsContainer, VMMFileIDsSandbox},
		Doc: "With an unprivileged VMM (vmm_id_range): the host owners of the files it serves. container: the root file system and volumes reach the VMM through writable idmapped mounts (host id N is the sandbox's id START+N), so files keep the owners runc would give them on the host (container root writes root-owned volumes, writes land in the bundle's rootfs or the snapshot's upper directory, and can be setuid-root files there, as with runc); the VMM and virtiofsd run without setfcap, so no file capability is set through them. sandbox: the strict mode: everything the guest creates is owned by the sandbox's host ids, a bundle's rootfs is shown through an overlay whose writes go with the container, and volumes are shared with their host owners, so root-owned host files are read-only to container root. See docs/security.md."},
	{Section: "hypervisor", Name: "rootless",
		Consumer: "oci.rootlessPlan", Type: "bool",
		Doc: "Rootless mode: the sandbox needs no real root on the host. QEMU and its helpers run as the calling user (the shim's), state lives under $XDG_RUNTIME_DIR/vessel, a host cgroup is used only when delegated to the user (cgroup v2), and the network is the pod network namespace the caller made (podman's, with slirp4netns or pasta). Refused with it: shared_fs = \"virtio-fs\" (virtiofsd needs root), VM templates and the VM cache; vmm_id_range is not applied. On automatically when the shim runs as a user other than root or in a user namespace that is not the host's (rootless podman, rootlesskit). See docs/rootless.md."},
	{Section: "hypervisor", Name: "enable_debug",
		Consumer: "oci.HypervisorConfig", Type: "bool",
		Doc: "Verbose hypervisor and guest console logs."},

	// [agent]
	{Section: "agent", Name: "kernel_modules",
		Consumer: "oci.agentPlan", Type: "[]string", Allowed: "\"module param=value ...\" entries", check: checkKernelModule, Optional: true,
		Annotation: "kernel_modules", syntax: listSemicolon,
		Doc: "Guest kernel modules to load, each \"name\" followed by its parameters."},
	{Section: "agent", Name: "dial_timeout",
		Consumer: "oci.agentPlan", Type: "uint32", Unit: "seconds", Min: 1, Max: 600,
		Doc: "How long to wait for the agent to answer after boot."},
	{Section: "agent", Name: "request_timeout",
		Consumer: "oci.agentPlan", Type: "uint32", Unit: "seconds", Min: 1, Max: 3600,
		Doc: "Timeout of an agent request that has no timeout of its own."},
	{Section: "agent", Name: "create_container_timeout",
		Consumer: "oci.agentPlan", Type: "uint32", Unit: "seconds", Min: 1, Max: 3600,
		Doc: "Timeout of the CreateContainer request."},
	{Section: "agent", Name: "enable_tracing",
		Consumer: "oci.agentPlan", Type: "bool", Annotation: "enable_tracing",
		Doc: "The agent records OpenTelemetry spans for the host's requests (as children of the host's spans, carried in the ttrpc metadata) and the shim exports them with its own. Only while the shim traces (runtime.otlp_endpoint is set); without an endpoint nothing is traced. See docs/observability.md."},
	{Section: "agent", Name: "enable_debug",
		Consumer: "oci.HypervisorConfig", Type: "bool",
		Doc: "Agent logs at debug level (vessel.log=debug on the guest kernel command line); hypervisor.enable_debug implies it."},
	{Section: "agent", Name: "debug_console_enabled",
		Consumer: "sandbox.Sandbox.setup", Type: "bool",
		Doc: "Allow `vessel debug console` and `vessel debug exec` into the guest (outside every container): the shim serves debug.sock in the sandbox's state directory and the agent accepts its Debug requests for this sandbox only. The guest image needs a shell: `vessel image build --debug-console`."},
	{Section: "agent", Name: "policy_file",
		Consumer: "oci.agentPlan", Type: "path", Allowed: "absolute path", check: checkAbsPath, Optional: true,
		Doc: "Agent policy (TOML) the guest enforces on every host request from sandbox creation on; empty allows all. Examples in internal/agent/policy/examples."},
	{Section: "agent", Name: "container_pipe_size",
		Unsupported: "the agent does not resize containers' stdio pipes yet", Type: "uint32", Unit: "bytes", Min: 0, Max: 1 << 20,
		Annotation: "container_pipe_size",
		Doc:        "Size of containers' stdio pipes in the guest; 0 means the kernel default."},

	// [runtime]
	{Section: "runtime", Name: "enable_debug",
		Consumer: "shim.debugFromConfig", Type: "bool",
		Doc: "The shim logs at debug level from the sandbox's creation on, as when containerd starts it with -debug."},
	{Section: "runtime", Name: "otlp_endpoint",
		Consumer: "shim.service.tracingFromConfig", Type: "string", Allowed: "http:// or https:// URL of an OTLP/HTTP trace receiver", check: checkOTLPEndpoint, Optional: true,
		Doc: "Export OpenTelemetry spans of the sandbox create path with OTLP over HTTP (protobuf) to this URL, e.g. \"http://127.0.0.1:4318\" (the path defaults to /v1/traces). Empty: no tracing, at no cost. See docs/observability.md."},
	{Section: "runtime", Name: "sandbox_cgroup_only",
		Consumer: "oci.hostCgroupPlan", Type: "bool", Annotation: "sandbox_cgroup_only",
		Doc: "Keep the shim in the pod's host cgroup (linux.cgroupsPath) with the VM; otherwise the shim returns to the cgroup it was started in once the VM runs, and only the VM and its helpers are charged to the pod."},
	{Section: "runtime", Name: "disable_guest_seccomp",
		Consumer: "oci.GuestSpec", Type: "bool", Annotation: "disable_guest_seccomp",
		Doc: "Do not apply containers' seccomp profiles inside the guest."},
	{Section: "runtime", Name: "internetworking_model",
		Consumer: "oci.networkPlan", Type: "string", Enum: []string{"tcfilter", "macvtap", "none"},
		Annotation: "internetworking_model",
		Doc:        "How the VM joins the pod network: tcfilter mirrors each pod interface to a tap with tc filters; macvtap puts a macvtap device on each pod veth (which lends it its MAC); none attaches nothing (the guest has loopback only). See docs/networking.md."},
	{Section: "runtime", Name: "disable_new_netns",
		Consumer: "oci.networkPlan", Type: "bool", Annotation: "disable_new_netns",
		Doc: "Leave the VM out of the pod network (it gets no network device; the hypervisor never enters a network namespace anyway); needs internetworking_model = \"none\"."},
	{Section: "runtime", Name: "static_sandbox_resource_mgmt",
		Consumer: "oci.SandboxConfig", Type: "bool",
		Doc: "Size the VM once at boot from the pod's CRI sizing annotations (or a single container's limits) instead of hot-plugging CPUs and memory per container. With false, container create and update grow the VM (vCPUs and memory hot-plugged, onlined by the agent), and lowered limits or deleted containers take back what is no longer needed: hot-plugged memory as whole DIMMs (the agent offlines their memory, then QEMU unplugs them; memory the guest cannot spare stays until a later update) and hot-plugged vCPUs (unplugged under KVM; under TCG they stay plugged and the guest keeps them offline until a later grow: docs/host-cgroups.md)."},
	{Section: "runtime", Name: "experimental",
		Unsupported: "this Vessel has no experimental features", Type: "[]string", Allowed: "feature names (" + reFeature.String() + ")", check: checkPattern(reFeature), Optional: true,
		Annotation: "experimental", syntax: listComma,
		Doc: "Experimental features to enable."},
	{Section: "runtime", Name: "enable_annotations",
		Consumer: "config.Config.WithAnnotations", Type: "[]string", Allowed: "regular expressions (RE2)", check: checkRegexp, Optional: true,
		Doc: "Annotations a pod may use. Each regexp must match a whole \"section.name\", e.g. 'hypervisor\\.default_.*' (a TOML literal string); for hypervisor annotations the bare name (Kata's convention, e.g. \"default_vcpus\") also matches. Empty refuses every configuration annotation."},

	// [factory]
	{Section: "factory", Name: "enable_template",
		Consumer: "factory.FromConfig", Type: "bool",
		Doc: "Clone new VMs from a template VM (needs an initrd)."},
	{Section: "factory", Name: "template_path",
		Consumer: "factory.ConfigFor", Type: "path", Allowed: "absolute path", check: checkAbsPath,
		Doc: "Directory holding the template VM's state."},
	{Section: "factory", Name: "vm_cache_number",
		Consumer: "factory.FromConfig", Type: "uint32", Min: 0, Max: 64,
		Doc: "Pre-booted VMs kept ready by the cache server; 0 disables the cache."},
	{Section: "factory", Name: "vm_cache_endpoint",
		Consumer: "factory.ConfigFor", Type: "path", Allowed: "absolute path", check: checkAbsPath,
		Doc: "Unix socket of the VM cache server."},
}

// Keys returns the key table in documentation order. The caller may modify the result.
func Keys() []Key {
	out := make([]Key, len(keyTable))
	copy(out, keyTable)
	return out
}

// lookupKey finds a key by section and name.
func lookupKey(section, name string) (Key, bool) {
	for _, k := range keyTable {
		if k.Section == section && k.Name == name {
			return k, true
		}
	}
	return Key{}, false
}
