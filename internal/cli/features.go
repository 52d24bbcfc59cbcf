package cli

import (
	"fmt"
	"runtime"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"
	"github.com/urfave/cli/v2"

	"github.com/vessel-containers/vessel/internal/hooks"
	"github.com/vessel-containers/vessel/internal/version"
)

func featuresCommand() *cli.Command {
	return &cli.Command{
		Name:  "features",
		Usage: "show the enabled features",
		Description: `The features command prints what this runtime supports as the runtime-spec's features
JSON. Containers run in a VM whose guest agent creates them with runc's libcontainer and
cgroup v2; hooks run on the host.`,
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return fmt.Errorf("features takes no arguments (got %d)", c.NArg())
			}
			return writeJSON(c.App.Writer, runtimeFeatures())
		},
	}
}

// runtimeFeatures describes vessel with its guest agent (libcontainer in the VM).
func runtimeFeatures() *features.Features {
	yes, no := true, false
	hookNames := make([]string, 0, len(hooks.Kinds))
	for _, k := range hooks.Kinds {
		hookNames = append(hookNames, string(k))
	}
	return &features.Features{
		OCIVersionMin: "1.0.0",
		OCIVersionMax: specs.Version,
		Hooks:         hookNames,
		MountOptions:  mountOptions(),
		Linux: &features.Linux{
			Namespaces:   []string{"cgroup", "ipc", "mount", "network", "pid", "user", "uts"},
			Capabilities: capabilities(),
			Cgroup: &features.Cgroup{
				// The guest mounts cgroup v2 only; there is no systemd in the guest.
				V1: &no, V2: &yes, Systemd: &no, SystemdUser: &no, Rdma: &no,
			},
			Seccomp: &features.Seccomp{
				Enabled:   &yes,
				Actions:   []string{"SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"},
				Operators: []string{"SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT", "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"},
				Archs:     []string{"SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32"},
			},
			Apparmor:        &features.Apparmor{Enabled: &no},
			Selinux:         &features.Selinux{Enabled: &no},
			IntelRdt:        &features.IntelRdt{Enabled: &no},
			MountExtensions: &features.MountExtensions{IDMap: &features.IDMap{Enabled: &no}},
		},
		Annotations: map[string]string{
			"io.vessel.version":     version.Version,
			"io.vessel.isolation":   "vm",
			"io.vessel.hypervisors": "qemu",
			"io.vessel.go":          runtime.Version(),
		},
		PotentiallyUnsafeConfigAnnotations: []string{"io.vessel.config.", "io.katacontainers.config."},
	}
}

// mountOptions are the mount options libcontainer in the guest recognizes.
func mountOptions() []string {
	return []string{
		"acl", "async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec",
		"iversion", "lazytime", "loud", "mand", "noacl", "noatime", "nodev", "nodiratime", "noexec",
		"noiversion", "nolazytime", "nomand", "norelatime", "nostrictatime", "nosuid", "nosymfollow",
		"private", "rbind", "relatime", "remount", "ro", "rprivate", "rro", "rrw", "rshared", "rslave",
		"runbindable", "rw", "shared", "silent", "slave", "strictatime", "suid", "symfollow", "sync",
		"tmpcopyup", "unbindable",
	}
}

// capabilities are the Linux capabilities of the guest kernel (6.1).
func capabilities() []string {
	return []string{
		"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
		"CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
		"CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
		"CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
		"CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
		"CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
		"CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
		"CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
	}
}
