package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"
)

// KataMapping says what becomes of one key of Kata Containers' configuration.toml: it is
// carried onto Vessel's key Vessel, or dropped for the reason Drop.
type KataMapping struct {
	// Kata is the key as Kata names it, with its hypervisor and agent sub-tables:
	// "hypervisor.qemu.default_vcpus", "agent.kata.dial_timeout", "runtime.enable_debug".
	Kata   string
	Vessel string
	Drop   string
}

// Reasons shared by several dropped Kata keys.
const (
	kataGuest     = "Kata's guest runs kata-agent, not vessel-agent: Vessel boots its own kernel and initramfs (hypervisor.kernel, hypervisor.initrd; `vessel image build`)"
	kataVirtiofsd = "Kata's virtiofsd is the Rust daemon, whose command line is not that of the C virtiofsd Vessel drives (hypervisor.virtio_fs_daemon keeps QEMU's)"
	kataSELinux   = "no equivalent: Vessel labels neither QEMU nor the guest for SELinux"
	kataVhostUser = "no equivalent: vhost-user block devices are not supported"
	kataVFIO      = "no equivalent: VFIO devices are not passed to the guest"
	kataJaeger    = "no equivalent: Vessel exports traces over OTLP (runtime.otlp_endpoint), not to Jaeger"
	kataKubelet   = "no equivalent: the shim does not ask kubelet's pod resources API for cold-plugged devices"
)

// hvKey carries [hypervisor.qemu] name onto [hypervisor] name.
func hvKey(name string) KataMapping {
	return KataMapping{Kata: "hypervisor.qemu." + name, Vessel: "hypervisor." + name}
}

// kataKeys is every key of Kata's QEMU configuration (src/runtime/config/
// configuration-qemu.toml.in) and what becomes of it. A key missing here is dropped as
// unknown. A carried key whose value Vessel refuses (a key Vessel does not support, set to
// anything but its default) is dropped with Vessel's reason.
var kataKeys = []KataMapping{
	hvKey("path"),
	{Kata: "hypervisor.qemu.kernel", Drop: kataGuest},
	{Kata: "hypervisor.qemu.image", Drop: kataGuest},
	{Kata: "hypervisor.qemu.initrd", Drop: kataGuest},
	hvKey("machine_type"),
	{Kata: "hypervisor.qemu.rootfs_type", Drop: "no equivalent: the guest boots from an initramfs, not a root filesystem image"},
	hvKey("rootless"),
	{Kata: "hypervisor.qemu.enable_annotations", Vessel: "runtime.enable_annotations"},
	hvKey("valid_hypervisor_paths"),
	hvKey("kernel_params"),
	{Kata: "hypervisor.qemu.firmware", Drop: "no equivalent: QEMU boots the kernel directly with its own firmware"},
	{Kata: "hypervisor.qemu.firmware_volume", Drop: "no equivalent: QEMU boots the kernel directly with its own firmware"},
	hvKey("machine_accelerators"),
	{Kata: "hypervisor.qemu.seccompsandbox", Drop: "no equivalent: the qemu driver confines QEMU itself (docs/security.md) rather than through QEMU's -sandbox"},
	hvKey("cpu_features"),
	hvKey("default_vcpus"),
	hvKey("default_maxvcpus"),
	{Kata: "hypervisor.qemu.default_bridges", Drop: "no equivalent: devices go on the q35 machine's PCIe root complex; Vessel adds no PCI bridges"},
	hvKey("default_memory"),
	hvKey("memory_slots"),
	hvKey("default_maxmemory"),
	hvKey("memory_offset"),
	hvKey("enable_virtio_mem"),
	hvKey("disable_block_device_use"),
	hvKey("shared_fs"),
	{Kata: "hypervisor.qemu.virtio_fs_daemon", Drop: kataVirtiofsd},
	{Kata: "hypervisor.qemu.valid_virtio_fs_daemon_paths", Drop: kataVirtiofsd},
	hvKey("virtio_fs_cache_size"),
	{Kata: "hypervisor.qemu.virtio_fs_queue_size", Drop: "no equivalent: virtio-fs queues keep QEMU's size"},
	{Kata: "hypervisor.qemu.virtio_fs_extra_args", Drop: kataVirtiofsd},
	hvKey("virtio_fs_cache"),
	hvKey("block_device_driver"),
	hvKey("block_device_aio"),
	hvKey("block_device_cache_set"),
	hvKey("block_device_cache_direct"),
	hvKey("block_device_cache_noflush"),
	{Kata: "hypervisor.qemu.block_device_logical_sector_size", Drop: "no equivalent: disks keep QEMU's sector sizes"},
	{Kata: "hypervisor.qemu.block_device_physical_sector_size", Drop: "no equivalent: disks keep QEMU's sector sizes"},
	hvKey("enable_iothreads"),
	{Kata: "hypervisor.qemu.indep_iothreads", Drop: "no equivalent: Vessel runs no I/O threads"},
	hvKey("enable_mem_prealloc"),
	{Kata: "hypervisor.qemu.reclaim_guest_freed_memory", Drop: "no equivalent: the guest does not report freed pages (no virtio-balloon)"},
	hvKey("enable_hugepages"),
	hvKey("file_mem_backend"),
	hvKey("valid_file_mem_backends"),
	{Kata: "hypervisor.qemu.enable_vhost_user_store", Drop: kataVhostUser},
	{Kata: "hypervisor.qemu.vhost_user_store_path", Drop: kataVhostUser},
	{Kata: "hypervisor.qemu.valid_vhost_user_store_paths", Drop: kataVhostUser},
	{Kata: "hypervisor.qemu.vhost_user_reconnect_timeout_sec", Drop: kataVhostUser},
	hvKey("enable_iommu"),
	{Kata: "hypervisor.qemu.enable_iommu_platform", Drop: "no equivalent: virtio devices do not use iommu_platform"},
	{Kata: "hypervisor.qemu.enable_numa", Drop: "no equivalent: the guest has one NUMA node"},
	{Kata: "hypervisor.qemu.numa_mapping", Drop: "no equivalent: the guest has one NUMA node"},
	{Kata: "hypervisor.qemu.pflashes", Drop: "no equivalent: no flash images are attached"},
	hvKey("enable_debug"),
	{Kata: "hypervisor.qemu.extra_monitor_socket", Drop: "no equivalent: QEMU's QMP socket belongs to the driver alone"},
	{Kata: "hypervisor.qemu.disable_nesting_checks", Drop: "no equivalent: Vessel does not check for nested virtualisation"},
	hvKey("msize_9p"),
	hvKey("disable_image_nvdimm"),
	hvKey("hot_plug_vfio"),
	{Kata: "hypervisor.qemu.cold_plug_vfio", Drop: kataVFIO},
	hvKey("pcie_root_port"),
	hvKey("disable_vhost_net"),
	hvKey("entropy_source"),
	hvKey("valid_entropy_sources"),
	hvKey("guest_hook_path"),
	{Kata: "hypervisor.qemu.rx_rate_limiter_max_rate", Drop: "no equivalent: network interfaces have no rate limiter (disks have hypervisor.disk_rate_limiter_*)"},
	{Kata: "hypervisor.qemu.tx_rate_limiter_max_rate", Drop: "no equivalent: network interfaces have no rate limiter (disks have hypervisor.disk_rate_limiter_*)"},
	hvKey("disk_rate_limiter_bw_max_rate"),
	hvKey("disk_rate_limiter_ops_max_rate"),
	{Kata: "hypervisor.qemu.guest_memory_dump_path", Drop: "no equivalent: guest memory is not dumped when the guest panics"},
	{Kata: "hypervisor.qemu.guest_memory_dump_paging", Drop: "no equivalent: guest memory is not dumped when the guest panics"},
	hvKey("enable_guest_swap"),
	{Kata: "hypervisor.qemu.use_legacy_serial", Drop: "no equivalent: the guest console is a virtio console"},
	{Kata: "hypervisor.qemu.disable_selinux", Drop: kataSELinux},
	{Kata: "hypervisor.qemu.disable_guest_selinux", Drop: kataSELinux},
	hvKey("jailer_path"),
	hvKey("valid_jailer_paths"),

	{Kata: "factory.enable_template", Vessel: "factory.enable_template"},
	{Kata: "factory.template_path", Vessel: "factory.template_path"},
	{Kata: "factory.vm_cache_number", Vessel: "factory.vm_cache_number"},
	{Kata: "factory.vm_cache_endpoint", Vessel: "factory.vm_cache_endpoint"},

	{Kata: "agent.kata.enable_debug", Vessel: "agent.enable_debug"},
	{Kata: "agent.kata.enable_tracing", Vessel: "agent.enable_tracing"},
	{Kata: "agent.kata.kernel_modules", Vessel: "agent.kernel_modules"},
	{Kata: "agent.kata.debug_console_enabled", Vessel: "agent.debug_console_enabled"},
	{Kata: "agent.kata.dial_timeout", Vessel: "agent.dial_timeout"},
	{Kata: "agent.kata.container_pipe_size", Vessel: "agent.container_pipe_size"},
	{Kata: "agent.kata.cdh_api_timeout", Drop: "no equivalent: there is no confidential data hub in the guest"},

	{Kata: "runtime.enable_debug", Vessel: "runtime.enable_debug"},
	{Kata: "runtime.internetworking_model", Vessel: "runtime.internetworking_model"},
	{Kata: "runtime.disable_guest_seccomp", Vessel: "runtime.disable_guest_seccomp"},
	{Kata: "runtime.enable_vcpus_pinning", Drop: "no equivalent: vCPU threads are not pinned"},
	{Kata: "runtime.guest_selinux_label", Drop: kataSELinux},
	{Kata: "runtime.enable_tracing", Drop: kataJaeger},
	{Kata: "runtime.jaeger_endpoint", Drop: kataJaeger},
	{Kata: "runtime.jaeger_user", Drop: kataJaeger},
	{Kata: "runtime.jaeger_password", Drop: kataJaeger},
	{Kata: "runtime.disable_new_netns", Vessel: "runtime.disable_new_netns"},
	{Kata: "runtime.sandbox_cgroup_only", Vessel: "runtime.sandbox_cgroup_only"},
	{Kata: "runtime.static_sandbox_resource_mgmt", Vessel: "runtime.static_sandbox_resource_mgmt"},
	{Kata: "runtime.sandbox_bind_mounts", Drop: "no equivalent: host paths reach the guest only as container mounts"},
	{Kata: "runtime.vfio_mode", Drop: kataVFIO},
	{Kata: "runtime.disable_guest_empty_dir", Drop: "no equivalent: emptyDir volumes have no mode of their own"},
	{Kata: "runtime.emptydir_mode", Drop: "no equivalent: emptyDir volumes have no mode of their own"},
	{Kata: "runtime.experimental", Vessel: "runtime.experimental"},
	{Kata: "runtime.enable_pprof", Drop: "no equivalent: the shim serves no pprof endpoint"},
	{Kata: "runtime.create_container_timeout", Vessel: "agent.create_container_timeout"},
	{Kata: "runtime.dan_conf", Drop: "no equivalent: Directly Attachable Network devices are not supported"},
	{Kata: "runtime.kubelet_root_dir", Drop: kataKubelet},
	{Kata: "runtime.pod_resource_api_sock", Drop: kataKubelet},
}

// KataMappings is the Kata import's mapping table, for the generated reference.
func KataMappings() []KataMapping { return slices.Clone(kataKeys) }

// KataKey is one key of a Kata configuration: its name as Kata writes it and its value in
// TOML.
type KataKey struct {
	Kata  string
	Value string
	// Vessel is the key it became (carried keys).
	Vessel string
	// Reason says why it was dropped (dropped keys).
	Reason string
	pos    int // in the file
}

// KataImport is a Kata configuration carried over to Vessel's.
type KataImport struct {
	// Config is the resulting configuration, validated.
	Config *Config
	// Carried and Dropped are the Kata file's keys, in the file's order.
	Carried []KataKey
	Dropped []KataKey
	// values are the carried values by Vessel key.
	values map[string]any
}

// ImportKata reads Kata Containers' configuration.toml for QEMU (its [hypervisor.qemu],
// [agent.kata], [runtime] and [factory] tables) and carries every key Vessel has an
// equivalent for onto Vessel's configuration; the other keys are dropped, each with its
// reason. file names the source in errors. A configuration of another Kata hypervisor is
// refused.
func ImportKata(data []byte, file string) (*KataImport, error) {
	var tree map[string]any
	md, err := toml.Decode(string(data), &tree)
	if err != nil {
		return nil, fmt.Errorf("kata configuration %s: %w", file, err)
	}
	for section, want := range map[string]string{"hypervisor": "qemu", "agent": "kata"} {
		sub, _ := tree[section].(map[string]any)
		for name := range sub {
			if name != want {
				return nil, fmt.Errorf("kata configuration %s: [%s.%s]: only Kata's QEMU configuration, [%s.%s], is imported", file, section, name, section, want)
			}
		}
	}
	byKata := make(map[string]KataMapping, len(kataKeys))
	for _, k := range kataKeys {
		byKata[k.Kata] = k
	}
	imp := &KataImport{values: map[string]any{}}
	for pos, key := range md.Keys() {
		v, ok := lookup(tree, key)
		if !ok {
			continue
		}
		if _, table := v.(map[string]any); table {
			continue
		}
		name := strings.Join(key, ".")
		kk := KataKey{Kata: name, Value: tomlValue(v), pos: pos}
		m, known := byKata[name]
		switch {
		case !known:
			kk.Reason = "no equivalent: Vessel does not know this key"
		case m.Vessel == "":
			kk.Reason = m.Drop
		default:
			if err := decodesAs(m.Vessel, v); err != nil {
				kk.Reason = fmt.Sprintf("%s takes no such value: %v", m.Vessel, err)
				break
			}
			kk.Vessel = m.Vessel
			imp.values[m.Vessel] = v
		}
		if kk.Vessel != "" {
			imp.Carried = append(imp.Carried, kk)
		} else {
			imp.Dropped = append(imp.Dropped, kk)
		}
	}
	// Vessel validates the carried keys together; a value it refuses is dropped with its
	// reason, and the rest validated again.
	for {
		var b bytes.Buffer
		if err := imp.encodeValues(&b); err != nil {
			return nil, err
		}
		cfg, err := Parse(b.Bytes(), file)
		if err == nil {
			imp.Config = cfg
			return imp, nil
		}
		refused := map[string]string{}
		for _, e := range fieldErrors(err) {
			if _, carried := imp.values[e.Key]; !carried {
				return nil, fmt.Errorf("kata configuration %s, carried over: %w", file, err)
			}
			reason := "Vessel refuses the value: " + e.Reason
			if e.Allowed != "" {
				reason += " (allowed: " + e.Allowed + ")"
			}
			refused[e.Key] = reason
		}
		if len(refused) == 0 {
			return nil, fmt.Errorf("kata configuration %s, carried over: %w", file, err)
		}
		imp.refuse(refused)
	}
}

// refuse moves the carried keys whose Vessel keys are in reasons to the dropped ones,
// keeping the file's order.
func (imp *KataImport) refuse(reasons map[string]string) {
	var carried []KataKey
	for _, k := range imp.Carried {
		r, ok := reasons[k.Vessel]
		if !ok {
			carried = append(carried, k)
			continue
		}
		delete(imp.values, k.Vessel)
		k.Vessel, k.Reason = "", r
		imp.Dropped = append(imp.Dropped, k)
	}
	imp.Carried = carried
	sort.SliceStable(imp.Dropped, func(i, j int) bool { return imp.Dropped[i].pos < imp.Dropped[j].pos })
}

// fieldErrors are the *FieldError values in err (a joined error or one).
func fieldErrors(err error) []*FieldError {
	var out []*FieldError
	var fe *FieldError
	if errors.As(err, &fe) {
		if j, ok := err.(interface{ Unwrap() []error }); ok { //nolint:errorlint // walking errors.Join's list
			for _, e := range j.Unwrap() {
				if errors.As(e, &fe) {
					out = append(out, fe)
				}
			}
			return out
		}
		out = append(out, fe)
	}
	return out
}

// lookup is the value at key in tree.
func lookup(tree map[string]any, key toml.Key) (any, bool) {
	var cur any = tree
	for _, k := range key {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[k]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// decodesAs checks that v decodes into Vessel's key vessel ("section.name").
func decodesAs(vessel string, v any) error {
	section, name, _ := strings.Cut(vessel, ".")
	var b bytes.Buffer
	if err := toml.NewEncoder(&b).Encode(map[string]any{section: map[string]any{name: v}}); err != nil {
		return err
	}
	c := Default()
	_, err := toml.Decode(b.String(), c)
	return err
}

// tomlValue is v as TOML writes it.
func tomlValue(v any) string {
	var b bytes.Buffer
	if err := toml.NewEncoder(&b).Encode(map[string]any{"v": v}); err != nil {
		return fmt.Sprint(v)
	}
	return strings.TrimSpace(strings.TrimPrefix(b.String(), "v = "))
}

// encodeValues writes the carried values as TOML, in the key table's order.
func (imp *KataImport) encodeValues(w io.Writer) error {
	section := ""
	for _, k := range keyTable {
		v, ok := imp.values[k.FullName()]
		if !ok {
			continue
		}
		if k.Section != section {
			if section != "" {
				fmt.Fprintln(w)
			}
			section = k.Section
			fmt.Fprintf(w, "[%s]\n", section)
		}
		if err := toml.NewEncoder(w).Encode(map[string]any{k.Name: v}); err != nil {
			return fmt.Errorf("encode %s: %w", k.FullName(), err)
		}
	}
	return nil
}

// Encode writes the imported configuration: a comment naming the source and every
// dropped Kata key with its reason, then the carried keys (the others keep Vessel's
// defaults).
func (imp *KataImport) Encode(w io.Writer, source string) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Vessel configuration imported from Kata Containers' %s (vessel config import-kata).\n", source)
	fmt.Fprintf(&b, "# %d Kata keys carried over; the keys not set here keep Vessel's defaults (vessel env prints them all).\n", len(imp.Carried))
	if len(imp.Dropped) > 0 {
		fmt.Fprintf(&b, "#\n# %d Kata keys not carried over:\n", len(imp.Dropped))
		for _, d := range imp.Dropped {
			fmt.Fprintf(&b, "#   %s = %s: %s\n", d.Kata, d.Value, d.Reason)
		}
	}
	b.WriteByte('\n')
	if err := imp.encodeValues(&b); err != nil {
		return err
	}
	if _, err := w.Write(b.Bytes()); err != nil {
		return fmt.Errorf("write configuration: %w", err)
	}
	return nil
}
