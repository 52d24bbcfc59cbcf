//go:build linux

// Package device finds the devices the host hot-plugs into the guest. A virtio-blk disk or
// a NIC is named by its PCI path (hypervisor.DiskAddress.PCIPath, e.g. "1e/01": slot 0x1e
// of the root bus, then slot 1 of the bus behind that bridge), a virtio-scsi disk by its
// SCSI address ("<scsi-id>:<lun>"). WaitBlock and WaitNet subscribe to the kernel's device
// events (a NETLINK_KOBJECT_UEVENT socket) before they look in sysfs, so a device that
// appears between the look and the wait is not missed, and they never poll.
package device

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// Block is a disk the guest kernel made.
type Block struct {
	// Name is the kernel's name ("vda"); its node is /dev/<Name> (devtmpfs).
	Name         string
	Major, Minor uint32
}

// Path is the disk's node in devtmpfs.
func (b Block) Path() string { return "/dev/" + b.Name }

// rePCIPath is a PCI path: two-digit hexadecimal slots joined by '/'.
var rePCIPath = regexp.MustCompile(`^[0-9a-f]{2}(/[0-9a-f]{2})*$`)

// devpathPattern matches the sysfs path (as in a uevent's DEVPATH, without /sys) of a
// whole disk under the PCI device at pciPath: the root bus's slot, then on each bus behind
// a bridge the slot given (the bus numbers are the guest's own).
func devpathPattern(pciPath string) (*regexp.Regexp, error) {
	return pciPattern(pciPath, `/(?:[^/]+/)*block/([^/]+)$`)
}

// netPattern matches the sysfs path of the network interface of the PCI device at pciPath.
func netPattern(pciPath string) (*regexp.Regexp, error) {
	return pciPattern(pciPath, `/(?:[^/]+/)*net/([^/]+)$`)
}

// pciPattern matches the sysfs paths under the PCI device at pciPath that end in tail.
func pciPattern(pciPath, tail string) (*regexp.Regexp, error) {
	if !rePCIPath.MatchString(pciPath) {
		return nil, fmt.Errorf("%w: pci path %q: want two-digit hex slots joined by '/'", errdefs.ErrInvalidArgument, pciPath)
	}
	slots := strings.Split(pciPath, "/")
	var b strings.Builder
	b.WriteString(`^/devices/pci0000:00/0000:00:` + slots[0] + `\.0`)
	for _, s := range slots[1:] {
		b.WriteString(`/0000:[0-9a-f]{2}:` + s + `\.0`)
	}
	b.WriteString(tail)
	return regexp.MustCompile(b.String()), nil
}

// reSCSIAddress is a SCSI address: "<scsi-id>:<lun>".
var reSCSIAddress = regexp.MustCompile(`^([0-9]{1,3}):([0-9]{1,5})$`)

// scsiPattern matches the sysfs path of the whole disk at addr ("<scsi-id>:<lun>",
// channel 0) under any SCSI host: the guest has one, the VM's virtio-scsi controller.
func scsiPattern(addr string) (*regexp.Regexp, error) {
	m := reSCSIAddress.FindStringSubmatch(addr)
	if m == nil {
		return nil, fmt.Errorf("%w: scsi address %q: want <scsi-id>:<lun>", errdefs.ErrInvalidArgument, addr)
	}
	return regexp.MustCompile(`^/devices/.*/target[0-9]+:0:` + m[1] + `/[0-9]+:0:` + m[1] + `:` + m[2] + `/block/([^/]+)$`), nil
}

// WaitBlock returns the whole disk of the PCI device at pciPath, waiting until ctx ends
// for the kernel to announce it. sysDir is sysfs (/sys).
func WaitBlock(ctx context.Context, sysDir, pciPath string) (Block, error) {
	re, err := devpathPattern(pciPath)
	if err != nil {
		return Block{}, err
	}
	return waitDisk(ctx, sysDir, re, "pci path "+pciPath)
}

// WaitSCSI returns the SCSI disk at addr ("<scsi-id>:<lun>"), waiting until ctx ends for
// the kernel to announce it. sysDir is sysfs (/sys).
func WaitSCSI(ctx context.Context, sysDir, addr string) (Block, error) {
	re, err := scsiPattern(addr)
	if err != nil {
		return Block{}, err
	}
	return waitDisk(ctx, sysDir, re, "scsi address "+addr)
}

// waitDisk returns the disk whose sysfs path re matches: from sysfs if it is there, else
// from the kernel's add event for it.
func waitDisk(ctx context.Context, sysDir string, re *regexp.Regexp, where string) (Block, error) {
	sock, err := openUevents()
	if err != nil {
		return Block{}, err
	}
	defer sock.Close()
	if b, ok := findInSysfs(sysDir, re); ok {
		return b, nil
	}
	for {
		ev, err := readUevent(ctx, sock)
		if errors.Is(err, errOverrun) {
			// Events were dropped: the disk may have come meanwhile.
			if b, ok := findInSysfs(sysDir, re); ok {
				return b, nil
			}
			continue
		}
		if err != nil {
			return Block{}, fmt.Errorf("wait for the disk at %s: %w", where, err)
		}
		if ev["ACTION"] != "add" || ev["SUBSYSTEM"] != "block" || ev["DEVTYPE"] != "disk" {
			continue
		}
		m := re.FindStringSubmatch(ev["DEVPATH"])
		if m == nil {
			continue
		}
		maj, err1 := strconv.ParseUint(ev["MAJOR"], 10, 32)
		minor, err2 := strconv.ParseUint(ev["MINOR"], 10, 32)
		if err1 != nil || err2 != nil {
			return Block{}, fmt.Errorf("disk %s at %s: uevent without device numbers", m[1], where)
		}
		name := ev["DEVNAME"]
		if name == "" {
			name = m[1]
		}
		return Block{Name: name, Major: uint32(maj), Minor: uint32(minor)}, nil
	}
}

// WaitNet returns the kernel's name of the network interface of the PCI device at
// pciPath (a hot-plugged NIC), waiting until ctx ends for the kernel to announce it.
// sysDir is sysfs (/sys), mounted in the network namespace where the kernel creates the
// interface (sysfs shows the interfaces of that namespace only).
func WaitNet(ctx context.Context, sysDir, pciPath string) (string, error) {
	re, err := netPattern(pciPath)
	if err != nil {
		return "", err
	}
	sock, err := openUevents()
	if err != nil {
		return "", err
	}
	defer sock.Close()
	if name, ok := findNetInSysfs(sysDir, re); ok {
		return name, nil
	}
	for {
		ev, err := readUevent(ctx, sock)
		if errors.Is(err, errOverrun) {
			if name, ok := findNetInSysfs(sysDir, re); ok {
				return name, nil
			}
			continue
		}
		if err != nil {
			return "", fmt.Errorf("wait for the network interface at pci path %s: %w", pciPath, err)
		}
		if ev["ACTION"] != "add" || ev["SUBSYSTEM"] != "net" {
			continue
		}
		if m := re.FindStringSubmatch(ev["DEVPATH"]); m != nil {
			if ev["INTERFACE"] != "" {
				return ev["INTERFACE"], nil
			}
			return m[1], nil
		}
	}
}

// findNetInSysfs looks for an interface already present under the PCI path.
func findNetInSysfs(sysDir string, re *regexp.Regexp) (string, bool) {
	matches, _ := filepath.Glob(filepath.Join(sysDir, "class", "net", "*"))
	for _, link := range matches {
		target, err := filepath.EvalSymlinks(link)
		if err != nil {
			continue
		}
		rel, err := filepath.Rel(sysDir, target)
		if err != nil {
			continue
		}
		if m := re.FindStringSubmatch("/" + rel); m != nil {
			return m[1], true
		}
	}
	return "", false
}

// findInSysfs looks for a disk already present under the PCI path.
func findInSysfs(sysDir string, re *regexp.Regexp) (Block, bool) {
	matches, _ := filepath.Glob(filepath.Join(sysDir, "block", "*"))
	for _, link := range matches {
		target, err := filepath.EvalSymlinks(link)
		if err != nil {
			continue
		}
		rel, err := filepath.Rel(sysDir, target)
		if err != nil || !re.MatchString("/"+rel) {
			continue
		}
		dev, err := os.ReadFile(filepath.Join(target, "dev"))
		if err != nil {
			continue
		}
		maj, minor, ok := parseDev(string(bytes.TrimSpace(dev)))
		if !ok {
			continue
		}
		return Block{Name: filepath.Base(target), Major: maj, Minor: minor}, true
	}
	return Block{}, false
}

// parseDev reads a sysfs "dev" file: "major:minor".
func parseDev(s string) (uint32, uint32, bool) {
	a, b, ok := strings.Cut(s, ":")
	if !ok {
		return 0, 0, false
	}
	maj, err1 := strconv.ParseUint(a, 10, 32)
	minor, err2 := strconv.ParseUint(b, 10, 32)
	return uint32(maj), uint32(minor), err1 == nil && err2 == nil
}

// openUevents opens a socket that receives the kernel's device events.
func openUevents() (*os.File, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_KOBJECT_UEVENT)
	if err != nil {
		return nil, fmt.Errorf("uevent socket: %w", err)
	}
	// Group 1 is the kernel's own events (udev re-broadcasts on group 2; there is none here).
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: 1}); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("bind uevent socket: %w", err)
	}
	// A nonblocking descriptor joins Go's poller, so reads honour deadlines.
	return os.NewFile(uintptr(fd), "uevent"), nil
}

// errOverrun: the socket's buffer overflowed and events were lost.
var errOverrun = errors.New("uevents were dropped")

// readUevent returns the next event from the kernel as its KEY=value pairs.
func readUevent(ctx context.Context, sock *os.File) (map[string]string, error) {
	rc, err := sock.SyscallConn()
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { _ = sock.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	buf := make([]byte, 16<<10)
	for {
		var n int
		var from unix.Sockaddr
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			n, from, rerr = unix.Recvfrom(int(fd), buf, 0)
			return !errors.Is(rerr, unix.EAGAIN)
		})
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, err
		}
		if rerr != nil {
			if errors.Is(rerr, unix.ENOBUFS) {
				return nil, errOverrun
			}
			return nil, rerr
		}
		if nl, ok := from.(*unix.SockaddrNetlink); !ok || nl.Pid != 0 {
			continue // only the kernel's messages
		}
		return parseUevent(buf[:n]), nil
	}
}

// parseUevent splits "action@devpath\0KEY=value\0..." into its pairs.
func parseUevent(b []byte) map[string]string {
	ev := map[string]string{}
	for i, f := range bytes.Split(b, []byte{0}) {
		if i == 0 && bytes.Contains(f, []byte("@")) {
			continue
		}
		k, v, ok := bytes.Cut(f, []byte("="))
		if ok {
			ev[string(k)] = string(v)
		}
	}
	return ev
}
