package jail

import (
	"fmt"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// rlimitResources are the kernel's numbers of the limits the protocol knows.
var rlimitResources = map[Resource]int{
	RlimitCore:     unix.RLIMIT_CORE,
	RlimitNofile:   unix.RLIMIT_NOFILE,
	RlimitMsgqueue: unix.RLIMIT_MSGQUEUE,
}

// enter confines this thread (and, for the per-process parts, this process) by the
// arguments and execs the program. It returns only on failure.
func enter(args []string) error {
	s, err := parse(args)
	if err != nil {
		return err
	}
	// Capabilities and no_new_privs belong to a thread, and execve keeps the credentials
	// of the thread that calls it: all of it happens on this one.
	runtime.LockOSThread()
	if s.Root != nil {
		if err := enterRoot(s.Root, 3+s.ExtraFiles); err != nil { // root_linux.go
			return err
		}
	}
	if err := confine(s); err != nil {
		return err
	}
	err = syscall.Exec(s.Path, append([]string{s.Path}, s.Args...), os.Environ())
	return fmt.Errorf("exec %s: %w", s.Path, err)
}

// confine applies s to the calling thread, which must be locked to its goroutine.
func confine(s Spec) error {
	for _, r := range s.Rlimits {
		res := rlimitResources[r.Resource]
		var cur syscall.Rlimit
		if err := syscall.Getrlimit(res, &cur); err != nil {
			return fmt.Errorf("get rlimit %s: %w", r.Resource, err)
		}
		// A limit is a bound: a lower hard limit the process already has stays.
		v := min(r.Value, cur.Max)
		// syscall.Setrlimit, not unix's: for RLIMIT_NOFILE it also stops the runtime from
		// restoring, at exec, the soft limit the process started with.
		if err := syscall.Setrlimit(res, &syscall.Rlimit{Cur: v, Max: v}); err != nil {
			return fmt.Errorf("set rlimit %s to %d: %w", r.Resource, v, err)
		}
	}
	if err := keepFDs(3 + s.ExtraFiles); err != nil {
		return err
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set no_new_privs: %w", err)
	}
	return dropCaps(s.KeepCaps)
}

// keepFDs checks that descriptors 0 to n-1 are open and inherited, and marks every
// descriptor from n on close-on-exec.
func keepFDs(n int) error {
	for fd := range n {
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err != nil {
			return fmt.Errorf("descriptor %d, which the program is to inherit: %w", fd, err)
		}
		if flags&unix.FD_CLOEXEC != 0 {
			return fmt.Errorf("descriptor %d, which the program is to inherit, is close-on-exec", fd)
		}
	}
	if err := unix.CloseRange(uint(n), math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return fmt.Errorf("mark descriptors from %d close-on-exec: %w", n, err)
	}
	return nil
}

// lastCap is the highest capability this kernel knows.
func lastCap() (Cap, error) {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 0, fmt.Errorf("highest capability: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n < 0 || n > 63 {
		return 0, fmt.Errorf("highest capability: /proc/sys/kernel/cap_last_cap is %q, want a number up to 63", b)
	}
	return Cap(n), nil
}

// capSets are a thread's capability sets, each a CapMask.
type capSets struct{ effective, permitted, inheritable uint64 }

func getCaps() (capSets, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return capSets{}, fmt.Errorf("capget: %w", err)
	}
	join := func(lo, hi uint32) uint64 { return uint64(hi)<<32 | uint64(lo) }
	return capSets{
		effective:   join(data[0].Effective, data[1].Effective),
		permitted:   join(data[0].Permitted, data[1].Permitted),
		inheritable: join(data[0].Inheritable, data[1].Inheritable),
	}, nil
}

func setCaps(c capSets) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := [2]unix.CapUserData{
		{Effective: uint32(c.effective), Permitted: uint32(c.permitted), Inheritable: uint32(c.inheritable)},
		{Effective: uint32(c.effective >> 32), Permitted: uint32(c.permitted >> 32), Inheritable: uint32(c.inheritable >> 32)},
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capset: %w", err)
	}
	return nil
}

// boundingSet reads the calling thread's bounding set up to last.
func boundingSet(last Cap) (uint64, error) {
	var m uint64
	for c := Cap(0); c <= last; c++ {
		in, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(c), 0, 0, 0)
		if err != nil {
			return 0, fmt.Errorf("read bounding set (capability %s): %w", c, err)
		}
		if in == 1 {
			m |= 1 << uint(c)
		}
	}
	return m, nil
}

// dropCaps leaves the calling thread with at most keep: the bounding set holds nothing
// else, the ambient and inheritable sets are empty, and the permitted and effective sets
// hold the capabilities of keep that it had. Dropping from the bounding set needs
// CAP_SETPCAP; a thread without it may leave the bounding set as it is only when it holds
// no capability and is not root: under no_new_privs it can then gain none at exec.
func dropCaps(keep []Cap) error {
	last, err := lastCap()
	if err != nil {
		return err
	}
	want := CapMask(keep)
	cur, err := getCaps()
	if err != nil {
		return err
	}
	bnd, err := boundingSet(last)
	if err != nil {
		return err
	}
	if extra := bnd &^ want; extra != 0 {
		if cur.effective&CapMask([]Cap{CapSetpcap}) == 0 {
			if cur.permitted != 0 || os.Getuid() == 0 || os.Geteuid() == 0 {
				return fmt.Errorf("cannot drop %s from the bounding set: cap_setpcap is not effective", maskNames(extra))
			}
		} else {
			for c := Cap(0); c <= last; c++ {
				if extra&(1<<uint(c)) == 0 {
					continue
				}
				if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
					return fmt.Errorf("drop %s from the bounding set: %w", c, err)
				}
			}
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clear the ambient set: %w", err)
	}
	kept := cur.permitted & want
	if err := setCaps(capSets{effective: kept, permitted: kept}); err != nil {
		return err
	}
	return checkCaps(last, want, kept, extraAllowed(bnd, want, cur))
}

// extraAllowed is what the bounding set may still hold beyond want: all of it when the
// thread could not drop it (see dropCaps), else nothing.
func extraAllowed(bnd, want uint64, cur capSets) uint64 {
	if cur.effective&CapMask([]Cap{CapSetpcap}) == 0 {
		return bnd &^ want
	}
	return 0
}

// checkCaps reads the sets back: what the kernel did, not what was asked, is checked.
func checkCaps(last Cap, want, kept, bndExtra uint64) error {
	got, err := getCaps()
	if err != nil {
		return err
	}
	if got != (capSets{effective: kept, permitted: kept}) {
		return fmt.Errorf("capabilities after capset: effective %#x permitted %#x inheritable %#x, want %#x, %#x and 0",
			got.effective, got.permitted, got.inheritable, kept, kept)
	}
	bnd, err := boundingSet(last)
	if err != nil {
		return err
	}
	if extra := bnd &^ (want | bndExtra); extra != 0 {
		return fmt.Errorf("bounding set still holds %s", maskNames(extra))
	}
	for c := Cap(0); c <= last; c++ {
		in, err := unix.PrctlRetInt(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_IS_SET, uintptr(c), 0, 0)
		if err != nil {
			return fmt.Errorf("read ambient set (capability %s): %w", c, err)
		}
		if in != 0 {
			return fmt.Errorf("ambient set still holds %s", c)
		}
	}
	return nil
}

// maskNames lists the capabilities in m.
func maskNames(m uint64) string {
	var names []string
	for c := Cap(0); c < 64; c++ {
		if m&(1<<uint(c)) != 0 {
			names = append(names, c.String())
		}
	}
	return strings.Join(names, ",")
}

// CanConfine tells whether this process, started as the jail entry, could confine a
// program: the kernel has seccomp filters (for the program's own filter), ambient
// capabilities and close_range with CLOSE_RANGE_CLOEXEC, and the process can empty its
// bounding set (CAP_SETPCAP), or holds no capability and is not root.
func CanConfine() error {
	if _, err := os.Stat("/proc/sys/kernel/seccomp/actions_avail"); err != nil {
		return fmt.Errorf("the kernel has no seccomp filters: %w", err)
	}
	last, err := lastCap()
	if err != nil {
		return err
	}
	if _, err := unix.PrctlRetInt(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_IS_SET, 0, 0, 0); err != nil {
		return fmt.Errorf("the kernel has no ambient capabilities: %w", err)
	}
	// No descriptor is that high: the call changes nothing, and fails on a kernel
	// without the flag.
	if err := unix.CloseRange(math.MaxUint32-1, math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return fmt.Errorf("close_range(CLOSE_RANGE_CLOEXEC): %w", err)
	}
	cur, err := getCaps()
	if err != nil {
		return err
	}
	if cur.effective&CapMask([]Cap{CapSetpcap}) == 0 && (cur.permitted != 0 || os.Geteuid() == 0) {
		return fmt.Errorf("cap_setpcap is not effective: the bounding set (capabilities up to %s) cannot be dropped", last)
	}
	return nil
}
