package jail

import (
	"fmt"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
)

// Cap is a Linux capability, by its number (the same on every architecture).
type Cap int

// The capabilities by number (linux/capability.h).
const (
	CapChown Cap = iota
	CapDACOverride
	CapDACReadSearch
	CapFowner
	CapFsetid
	CapKill
	CapSetgid
	CapSetuid
	CapSetpcap
	CapLinuxImmutable
	CapNetBindService
	CapNetBroadcast
	CapNetAdmin
	CapNetRaw
	CapIPCLock
	CapIPCOwner
	CapSysModule
	CapSysRawio
	CapSysChroot
	CapSysPtrace
	CapSysPacct
	CapSysAdmin
	CapSysBoot
	CapSysNice
	CapSysResource
	CapSysTime
	CapSysTTYConfig
	CapMknod
	CapLease
	CapAuditWrite
	CapAuditControl
	CapSetfcap
	CapMacOverride
	CapMacAdmin
	CapSyslog
	CapWakeAlarm
	CapBlockSuspend
	CapAuditRead
	CapPerfmon
	CapBPF
	CapCheckpointRestore
)

// capNames are the names the argument protocol and /proc use, without "cap_".
var capNames = map[Cap]string{
	CapChown: "chown", CapDACOverride: "dac_override", CapDACReadSearch: "dac_read_search",
	CapFowner: "fowner", CapFsetid: "fsetid", CapKill: "kill", CapSetgid: "setgid",
	CapSetuid: "setuid", CapSetpcap: "setpcap", CapLinuxImmutable: "linux_immutable",
	CapNetBindService: "net_bind_service", CapNetBroadcast: "net_broadcast",
	CapNetAdmin: "net_admin", CapNetRaw: "net_raw", CapIPCLock: "ipc_lock",
	CapIPCOwner: "ipc_owner", CapSysModule: "sys_module", CapSysRawio: "sys_rawio",
	CapSysChroot: "sys_chroot", CapSysPtrace: "sys_ptrace", CapSysPacct: "sys_pacct",
	CapSysAdmin: "sys_admin", CapSysBoot: "sys_boot", CapSysNice: "sys_nice",
	CapSysResource: "sys_resource", CapSysTime: "sys_time", CapSysTTYConfig: "sys_tty_config",
	CapMknod: "mknod", CapLease: "lease", CapAuditWrite: "audit_write",
	CapAuditControl: "audit_control", CapSetfcap: "setfcap", CapMacOverride: "mac_override",
	CapMacAdmin: "mac_admin", CapSyslog: "syslog", CapWakeAlarm: "wake_alarm",
	CapBlockSuspend: "block_suspend", CapAuditRead: "audit_read", CapPerfmon: "perfmon",
	CapBPF: "bpf", CapCheckpointRestore: "checkpoint_restore",
}

func (c Cap) String() string {
	if n, ok := capNames[c]; ok {
		return n
	}
	return fmt.Sprintf("cap(%d)", int(c))
}

// ParseCap reads a capability name, with or without "cap_", in any case.
func ParseCap(name string) (Cap, error) {
	n := strings.TrimPrefix(strings.ToLower(name), "cap_")
	for c, cn := range capNames {
		if cn == n {
			return c, nil
		}
	}
	return 0, fmt.Errorf("unknown capability %q: %w", name, errdefs.ErrInvalidArgument)
}

// CapMask is the capability set as /proc/<pid>/status prints it (CapEff, CapBnd, ...):
// bit n is capability n.
func CapMask(caps []Cap) uint64 {
	var m uint64
	for _, c := range caps {
		m |= 1 << uint(c)
	}
	return m
}

// Resource is a resource limit, by its name in the argument protocol.
type Resource string

// The resource limits the entry sets.
const (
	// RlimitCore is the largest core dump (RLIMIT_CORE).
	RlimitCore Resource = "core"
	// RlimitNofile is one more than the highest descriptor number (RLIMIT_NOFILE).
	RlimitNofile Resource = "nofile"
	// RlimitMsgqueue is how many bytes POSIX message queues may hold (RLIMIT_MSGQUEUE).
	RlimitMsgqueue Resource = "msgqueue"
)

func (r Resource) String() string { return string(r) }

// resourceNames are the limits the protocol knows.
var resourceNames = map[Resource]bool{RlimitCore: true, RlimitNofile: true, RlimitMsgqueue: true}

// resourceByName finds a known limit by name.
var resourceByName = func() map[string]Resource {
	m := map[string]Resource{}
	for r := range resourceNames {
		m[string(r)] = r
	}
	return m
}()

// resourceList is the known limits' names, sorted, for messages.
func resourceList() []string {
	var l []string
	for r := range resourceNames {
		l = append(l, string(r))
	}
	slices.Sort(l)
	return l
}
