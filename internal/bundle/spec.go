package bundle

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// defaultCaps is the capability set runc and containerd give a non-privileged container.
var defaultCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// DefaultSpec is the spec Vessel's own tools and tests start from: the layout of `runc spec`
// with Docker's default capabilities, a writable root and a cgroup namespace, running args
// with rootfs as root.
func DefaultSpec(args []string, terminal bool) *specs.Spec {
	caps := append([]string(nil), defaultCaps...)
	return &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{
			Terminal: terminal,
			User:     specs.User{UID: 0, GID: 0},
			Args:     args,
			Env:      []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"},
			Cwd:      "/",
			Capabilities: &specs.LinuxCapabilities{
				Bounding: caps, Effective: caps, Permitted: caps,
			},
			Rlimits:         []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}},
			NoNewPrivileges: true,
		},
		Root:     &specs.Root{Path: "rootfs"},
		Hostname: "vessel",
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
		},
		Linux: &specs.Linux{
			Resources: &specs.LinuxResources{
				Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
			},
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace}, {Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace}, {Type: specs.MountNamespace}, {Type: specs.CgroupNamespace},
			},
			MaskedPaths: []string{
				"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
				"/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi",
			},
			ReadonlyPaths: []string{
				"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
			},
		},
	}
}

// WriteSpec writes spec as config.json into the bundle directory.
func WriteSpec(dir string, spec *specs.Spec) error {
	data, err := json.MarshalIndent(spec, "", "\t")
	if err != nil {
		return fmt.Errorf("encode spec: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o644); err != nil {
		return fmt.Errorf("write spec: %w", err)
	}
	return nil
}

// LoadSpec reads config.json from a bundle directory.
func LoadSpec(dir string) (*specs.Spec, error) {
	path := filepath.Join(dir, "config.json")
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read bundle spec: %w", err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	if spec.Root == nil || spec.Root.Path == "" {
		return nil, fmt.Errorf("%s: root.path is missing", path)
	}
	if spec.Process == nil || len(spec.Process.Args) == 0 {
		return nil, fmt.Errorf("%s: process.args is missing", path)
	}
	return &spec, nil
}

// RuncSpec is the spec `runc spec` of runc 1.1 writes, which tools written against runc
// (its own integration tests among them) edit: three capabilities, also ambient, a
// read-only root and no cgroup namespace; only the hostname differs.
func RuncSpec(args []string, terminal bool) *specs.Spec {
	spec := DefaultSpec(args, terminal)
	caps := []string{"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"}
	spec.Process.Capabilities = &specs.LinuxCapabilities{
		Bounding: caps, Effective: caps, Permitted: caps, Ambient: caps,
	}
	spec.Root.Readonly = true
	ns := spec.Linux.Namespaces[:0]
	for _, n := range spec.Linux.Namespaces {
		if n.Type != specs.CgroupNamespace {
			ns = append(ns, n)
		}
	}
	spec.Linux.Namespaces = ns
	return spec
}

// RootfsPath resolves the spec's root path against the bundle directory.
func RootfsPath(dir string, spec *specs.Spec) string {
	if filepath.IsAbs(spec.Root.Path) {
		return spec.Root.Path
	}
	return filepath.Join(dir, spec.Root.Path)
}

// CreateBusybox makes a complete bundle in dir: a busybox rootfs and a default spec
// running args.
func CreateBusybox(dir string, args []string, terminal bool) (*specs.Spec, error) {
	if err := BuildBusyboxRootfs(filepath.Join(dir, "rootfs"), ""); err != nil {
		return nil, err
	}
	spec := DefaultSpec(args, terminal)
	if err := WriteSpec(dir, spec); err != nil {
		return nil, err
	}
	return spec, nil
}
