//go:build linux

package libct

import (
	"path"
	"strconv"

	"github.com/opencontainers/runtime-spec/specs-go"
)

// The container's RLIMIT_AS is set at the last moment, where the address space is the
// program's own. libcontainer sets a process's rlimits on its init (the agent binary
// re-executed, a Go program with cgo) before the init's last steps: loading the seccomp
// filter, running startContainer hooks, executing the program. The init's address space
// is mostly the Go runtime's reservations, 1.3 GB and more (measured: VmSize 1,564,996 kB
// at the startContainer hook), so a RLIMIT_AS below that, 1 GiB in runtime-tools'
// process_rlimits, fails the init's next allocation: libseccomp's, the Go runtime's, a new
// thread's stack. With a limit lowered before it starts, Go 1.26 skips its scavenger
// index reservation and later maps its pieces at addresses computed from a nil base, so
// the init cannot be started under the limit either.
//
// Instead the init executes the agent binary once more (through /proc/self/exe, the
// sealed copy libcontainer made, which the container's /proc reaches) with rlimitExecMark:
// a C constructor (vessel_rlimit_as_exec) sets RLIMIT_AS and executes the process's
// program before the Go runtime starts, so nothing but the program runs under the limit,
// as with runc, whose smaller init fits. The step runs under the container's user,
// capabilities and seccomp filter (which must allow prlimit64); a program that is not
// found is reported by it when the process starts (exit status 255) rather than at create
// or exec. Without a /proc mount at /proc in the container, or in a binary built without
// cgo, libcontainer sets RLIMIT_AS with the other limits.

// rlimitExecMark is argv[1] of the RLIMIT_AS step; vessel_rlimit_as_exec matches it.
const rlimitExecMark = "--vessel-rlimit-as-exec"

// rlimitExecArgs are the args that run args with RLIMIT_AS set to soft and hard.
func rlimitExecArgs(soft, hard uint64, args []string) []string {
	return append([]string{"/proc/self/exe", rlimitExecMark, strconv.FormatUint(soft, 10), strconv.FormatUint(hard, 10)}, args...)
}

// mountsProc reports whether mounts put something at /proc: a proc file system or a bind
// of one, through which /proc/self/exe reaches the init's binary.
func mountsProc(mounts []specs.Mount) bool {
	for _, m := range mounts {
		if path.Clean(m.Destination) == "/proc" {
			return true
		}
	}
	return false
}
