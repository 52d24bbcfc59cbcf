//go:build linux

// Package boot does what PID 1 of the guest must do before the agent serves: switch the
// initramfs root so pivot_root works, mount the pseudo filesystems, set up cgroup v2 with the
// controllers containers need, make sure stdio is valid, and load kernel modules listed by the
// image builder. It also powers the VM off on a fatal error: PID 1 must never exit (the
// kernel would panic; with panic=-1 and QEMU's -no-reboot the VM stops either way, but a
// clean power-off leaves a readable console log).
package boot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"
)

// CgroupControllers are enabled in the root cgroup's subtree_control.
var cgroupControllers = []string{"cpu", "memory", "pids", "io", "cpuset", "hugetlb"}

// switchedMarker exists in the new root once the root switch happened.
const switchedDir = "/.vessel-root"

type mountSpec struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
	mode                   os.FileMode
}

// pseudoMounts are mounted in order after the root switch.
var pseudoMounts = []mountSpec{
	{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, "", 0o555},
	{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, "", 0o555},
	{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755", 0o755},
	{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5", 0o755},
	{"shm", "/dev/shm", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777", 0o1777},
	{"tmpfs", "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755", 0o755},
	{"tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777", 0o1777},
	{"cgroup2", "/sys/fs/cgroup", "cgroup2", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_RELATIME, "nsdelegate,memory_recursiveprot", 0o555},
}

// Setup prepares the guest. It must run first thing in PID 1, before anything touches
// cgroups (libcontainer caches whether cgroup v2 is mounted).
func Setup(ctx context.Context) error {
	start := time.Now()
	if err := switchRoot(); err != nil {
		return err
	}
	for _, m := range pseudoMounts {
		if err := mountOne(m); err != nil {
			return err
		}
	}
	if err := fixStdio(); err != nil {
		return err
	}
	// /dev/ptmx must point at the devpts instance mounted above.
	_ = os.Remove("/dev/ptmx")
	if err := os.Symlink("pts/ptmx", "/dev/ptmx"); err != nil {
		return fmt.Errorf("link /dev/ptmx: %w", err)
	}
	for _, l := range [][2]string{{"/proc/self/fd", "/dev/fd"}, {"/proc/self/fd/0", "/dev/stdin"}, {"/proc/self/fd/1", "/dev/stdout"}, {"/proc/self/fd/2", "/dev/stderr"}} {
		if err := os.Symlink(l[0], l[1]); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("link %s: %w", l[1], err)
		}
	}
	if err := enableControllers(ctx, "/sys/fs/cgroup"); err != nil {
		return err
	}
	if os.Getenv("PATH") == "" {
		_ = os.Setenv("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	}
	log.G(ctx).WithField("took", time.Since(start)).Debug("guest filesystems ready")
	return nil
}

// switchRoot makes / a real mount so pivot_root works: pivot_root refuses the initramfs
// rootfs. It bind-mounts / onto a directory, moves that mount over / and chroots into it.
func switchRoot() error {
	if _, err := os.Stat(switchedDir); err == nil {
		return nil // already done (the agent was restarted by hand)
	}
	if err := os.MkdirAll(switchedDir, 0o755); err != nil {
		return fmt.Errorf("root switch: mkdir %s: %w", switchedDir, err)
	}
	if err := unix.Mount("/", switchedDir, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("root switch: bind / on %s: %w", switchedDir, err)
	}
	if err := unix.Chdir(switchedDir); err != nil {
		return fmt.Errorf("root switch: chdir: %w", err)
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("root switch: move to /: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("root switch: chroot: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("root switch: chdir /: %w", err)
	}
	return nil
}

func mountOne(m mountSpec) error {
	if err := os.MkdirAll(m.target, m.mode.Perm()); err != nil {
		return fmt.Errorf("mkdir %s: %w", m.target, err)
	}
	if err := unix.Mount(m.source, m.target, m.fstype, m.flags, m.data); err != nil {
		if errors.Is(err, unix.EBUSY) {
			return nil // already mounted
		}
		return fmt.Errorf("mount %s on %s (%s): %w", m.fstype, m.target, m.data, err)
	}
	return nil
}

// fixStdio opens /dev/console (or /dev/null) on fds 0-2 when the kernel could not give PID 1
// a console: an initramfs without /dev/console leaves them closed, and later files would
// take those numbers.
func fixStdio() error {
	for fd := 0; fd <= 2; fd++ {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err == nil {
			continue
		}
		f, err := os.OpenFile("/dev/console", os.O_RDWR, 0)
		if err != nil {
			if f, err = os.OpenFile("/dev/null", os.O_RDWR, 0); err != nil {
				return fmt.Errorf("open stdio for fd %d: %w", fd, err)
			}
		}
		if err := unix.Dup3(int(f.Fd()), fd, 0); err != nil {
			f.Close()
			return fmt.Errorf("dup stdio to fd %d: %w", fd, err)
		}
		f.Close()
	}
	return nil
}

// enableControllers enables the controllers containers need, each on its own so that one the
// kernel lacks does not hide the others.
func enableControllers(ctx context.Context, root string) error {
	avail, err := os.ReadFile(root + "/cgroup.controllers")
	if err != nil {
		return fmt.Errorf("cgroup2: %w", err)
	}
	have := strings.Fields(string(avail))
	for _, c := range cgroupControllers {
		if !contains(have, c) {
			log.G(ctx).Warnf("cgroup2: controller %s is not available in this kernel", c)
			continue
		}
		if err := os.WriteFile(root+"/cgroup.subtree_control", []byte("+"+c), 0); err != nil {
			return fmt.Errorf("cgroup2: enable controller %s: %w", c, err)
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// PowerOff logs why and powers the VM off. It does not return.
func PowerOff(ctx context.Context, why error) {
	log.G(ctx).WithError(why).Error("vessel-agent: fatal error, powering off")
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		log.G(ctx).WithError(err).Error("power off failed")
	}
	// Not PID 1 or reboot refused: nothing else to do but stop.
	os.Exit(1)
}

// SinceBoot is the guest's CLOCK_BOOTTIME: the time since the kernel started. It needs no
// /proc, so PID 1 can read it before anything is mounted.
func SinceBoot() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// LogLevel returns the level asked for by `vessel.log=` on the kernel command line, or
// "info".
func LogLevel(cmdline string) string {
	for _, w := range strings.Fields(cmdline) {
		if v, ok := strings.CutPrefix(w, "vessel.log="); ok && v != "" {
			return v
		}
	}
	return "info"
}
