package qemu

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"time"

	"github.com/vessel-containers/vessel/internal/jail"
)

// QEMU runs confined (package jail): the driver starts the jail entry, which execs QEMU
// in place with only the capabilities below, no_new_privs, the resource limits below and
// no descriptor but stdin, stdout, stderr, the three listening sockets and the NICs' tap
// and vhost-net descriptors; QEMU then
// installs its own seccomp filter (-sandbox, cmdline.go). By default QEMU stays uid 0:
// its 9p server (security_model=none) reads and writes the container's files with their
// real owners, which are root and other uids. With hypervisor.Config.UserNS it is uid 0 of
// a user namespace of its own on unprivileged host ids, in a minimal root
// (userns_linux.go).

// qemuCaps are the capabilities QEMU keeps, each for the 9p server's calls on the
// container's files (hw/9pfs/9p-local.c, security_model=none), so that containers see
// the ownership semantics they had with a fully privileged QEMU:
//
//   - chown: fchownat for the guest's chown and for the owner of what it creates
//     (open, mkdir, mknod, symlink);
//   - dac_override: open, read, write, search and create in files and directories of
//     any owner and mode, as root in the guest expects (it also covers what
//     dac_read_search allows: dac_read_search is dropped, and with it
//     open_by_handle_at, which 9p's local backend does not use);
//   - fowner: chmod, utimensat, set ACLs and user xattrs, and unlink in sticky
//     directories, on files QEMU does not own;
//   - fsetid: keep setuid and setgid bits that chmod sets, that a write would clear, and
//     that a new file inherits from a setgid directory;
//   - mknod: device nodes the guest creates (security_model=none creates real ones);
//   - setfcap: the security.capability xattr, for file capabilities the guest sets
//     (setcap).
//
// Everything else is dropped: QEMU opens /dev/kvm, /dev/urandom, the kernel, initrd and
// template memory as their owner (root), gets its sockets as descriptors, and needs no
// network, ptrace, admin or resource capabilities.
var qemuCaps = []jail.Cap{
	jail.CapChown, jail.CapDACOverride, jail.CapFowner, jail.CapFsetid, jail.CapMknod, jail.CapSetfcap,
}

// qemuNofile bounds QEMU's descriptors (or the hard limit the driver has, if lower). The
// 9p server sizes its cache of open files from this limit (within 400 of it, it closes
// the least recently used ones), so guests with many open files keep working; a
// taken-over QEMU cannot hold more kernel objects through descriptors than this.
const qemuNofile = 65536

// qemuRlimits are QEMU's resource limits: no core dumps (a core holds guest memory and
// would land on a host disk), a bound on descriptors, and no POSIX message queues (QEMU
// uses none; as root without cap_sys_resource they could otherwise pin kernel memory).
// RLIMIT_NPROC is not set: the kernel does not enforce it for uid 0, and QEMU's seccomp
// filter (spawn=deny) already refuses fork and exec.
var qemuRlimits = []jail.Rlimit{
	{Resource: jail.RlimitCore, Value: 0},
	{Resource: jail.RlimitNofile, Value: qemuNofile},
	{Resource: jail.RlimitMsgqueue, Value: 0},
}

// jailSpec is how the jail entry runs binary with args, passing it extraFiles descriptors
// from fd 3 (the listening sockets, then the NICs').
func jailSpec(binary string, args []string, extraFiles int) jail.Spec {
	return jail.Spec{
		Path:       binary,
		Args:       args,
		KeepCaps:   qemuCaps,
		ExtraFiles: extraFiles,
		Rlimits:    qemuRlimits,
	}
}

// checkJail asks binary to parse the seccomp sandbox option: a QEMU built without seccomp
// refuses it; -version then exits before anything starts.
func checkJail(binary string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary, "-sandbox", seccompSandbox, "-version").CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s -sandbox %s: %w: %s", binary, seccompSandbox, err, bytes.TrimSpace(out))
	}
	return nil
}
