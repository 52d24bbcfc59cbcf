package sandbox

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/vessel-containers/vessel/internal/bundle"
	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/oci"
	"github.com/vessel-containers/vessel/internal/testutil"
)

// loopDevice is a loop device the test made over a file of its own.
type loopDevice struct {
	path         string // /dev/loopN
	file         string // the backing file
	major, minor int64
}

// newLoop makes a loop device over a new file of sizeMiB, formatted ext4 with the files of
// populate in it when populate is not nil, and detaches it at the end of the test. Call it
// before newEnv, so that the sandbox (and its VM) is gone when the device is detached.
func newLoop(t *testing.T, sizeMiB int64, populate map[string]string) loopDevice {
	t.Helper()
	dir := t.TempDir()
	var src string
	if populate != nil {
		src = filepath.Join(dir, "src")
		if err := os.Mkdir(src, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, content := range populate {
			if err := os.WriteFile(filepath.Join(src, name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return newLoopFrom(t, sizeMiB, src)
}

// newLoopFrom is newLoop with the ext4 file system made from the directory src (none when
// src is empty).
func newLoopFrom(t *testing.T, sizeMiB int64, src string) loopDevice {
	t.Helper()
	testutil.RequiresRoot(t)
	for _, bin := range []string{"losetup", "mkfs.ext4", "debugfs"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s is not installed: %v", bin, err)
		}
	}
	file := testutil.DiskImage(t, t.TempDir(), sizeMiB, src)
	dev := testutil.LoopDevice(t, file)
	var st unix.Stat_t
	if err := unix.Stat(dev, &st); err != nil {
		t.Fatal(err)
	}
	return loopDevice{path: dev, file: file, major: int64(unix.Major(st.Rdev)), minor: int64(unix.Minor(st.Rdev))}
}

// debugfsCat reads a file of an ext4 image without mounting it.
func debugfsCat(t *testing.T, image, name string) string {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", "cat /"+name, image).Output()
	if err != nil {
		t.Fatalf("debugfs cat %s: %v", name, err)
	}
	return string(out)
}

// disks lists the disks QEMU has for the sandbox's VM.
func (e *env) disks() []string {
	e.t.Helper()
	h, ok := e.sb.VM().(hypervisor.DiskHotplugger)
	if !ok {
		e.t.Fatalf("%T cannot hot-plug disks", e.sb.VM())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ids, err := h.Disks(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	return ids
}

func (e *env) deleteContainer(id string) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := e.sb.DeleteContainer(ctx, id); err != nil {
		e.t.Fatalf("delete container %s: %v", id, err)
	}
}

// TestRawBlockDevice hands a host block device to a container through linux.devices: the
// container sees a block device at the spec's path with the spec's mode and owner, reads
// and writes it, the bytes land in the host's file, and the disk leaves the VM when the
// container is deleted.
func TestRawBlockDevice(t *testing.T) {
	forEachBlockDriver(t, testRawBlockDevice)
}

// forEachBlockDriver runs test once per block driver, with a sandbox config that uses it.
func forEachBlockDriver(t *testing.T, test func(t *testing.T, driver func(*Config))) {
	for _, d := range []hypervisor.BlockDriver{hypervisor.BlockVirtioBlk, hypervisor.BlockVirtioSCSI} {
		t.Run(string(d), func(t *testing.T) {
			test(t, func(c *Config) { c.VM.Block.Driver = d })
		})
	}
}

func testRawBlockDevice(t *testing.T, driver func(*Config)) {
	loop := newLoop(t, 8, nil)
	e := newEnvWith(t, driver)
	scsi := e.sb.cfg.VM.Block.Driver == hypervisor.BlockVirtioSCSI
	mode := os.FileMode(0o640)
	uid, gid := uint32(1000), uint32(1001)
	script := `stat -c '%F %a %u:%g' /dev/xvdb
stat -c '%t' /dev/xvdb
printf vessel-raw-block | dd of=/dev/xvdb bs=512 seek=4096 conv=notrunc,fsync 2>/dev/null
dd if=/dev/xvdb bs=512 skip=4096 count=1 2>/dev/null | head -c 16; echo`
	c := e.container("raw", []string{"sh", "-c", script}, func(s *specs.Spec) {
		s.Linux.Devices = append(s.Linux.Devices, specs.LinuxDevice{Path: "/dev/xvdb", Type: "b", Major: loop.major, Minor: loop.minor, FileMode: &mode, UID: &uid, GID: &gid})
		if s.Linux.Resources == nil {
			s.Linux.Resources = &specs.LinuxResources{}
		}
		s.Linux.Resources.Devices = append(s.Linux.Resources.Devices, specs.LinuxDeviceCgroup{Allow: true, Type: "b", Major: &loop.major, Minor: &loop.minor, Access: "rwm"})
	})
	if got := e.disks(); len(got) != 1 {
		t.Fatalf("disks while the container exists: got %q, want one", got)
	}
	code, out, stderr := e.run(c, nil)
	if code != 0 {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	lines := strings.SplitN(out, "\n", 3)
	if len(lines) != 3 {
		t.Fatalf("stdout %q: want three lines", out)
	}
	if want := "block special file 640 1000:1001\nvessel-raw-block\n"; lines[0]+"\n"+lines[2] != want {
		t.Errorf("stdout %q, want %q around the major number", out, want)
	}
	// The node has the guest's major, not the host's (7, loop): sd (8) for a SCSI disk,
	// virtblk's dynamic one otherwise.
	major, err := strconv.ParseInt(lines[1], 16, 64)
	switch {
	case err != nil:
		t.Errorf("major %q: %v", lines[1], err)
	case major == loop.major:
		t.Errorf("the container's node has the host's major %d", major)
	case scsi != (major == 8):
		t.Errorf("major %d for the %s driver", major, e.sb.cfg.VM.Block.Driver)
	}
	e.deleteContainer("raw")
	if got := e.disks(); len(got) != 0 {
		t.Errorf("disks after delete: got %q, want none", got)
	}
	data, err := os.ReadFile(loop.file)
	if err != nil {
		t.Fatal(err)
	}
	if got := data[4096*512 : 4096*512+16]; !bytes.Equal(got, []byte("vessel-raw-block")) {
		t.Errorf("host file at 2 MiB: got %q, want the container's write", got)
	}
}

// TestDiskVolume mounts an ext4 block device as a volume of two containers: the guest
// mounts it (the host never does), the containers see the files written on the host and
// their writes land on the device, the disk is attached once for both and leaves the VM
// after the last container is deleted.
func TestDiskVolume(t *testing.T) {
	forEachBlockDriver(t, testDiskVolume)
}

func testDiskVolume(t *testing.T, driver func(*Config)) {
	loop := newLoop(t, 16, map[string]string{"from-host.txt": "written on the host\n"})
	e := newEnvWith(t, driver)
	volume := func(ro bool) func(*specs.Spec) {
		return func(s *specs.Spec) {
			opts := []string{"rw", "nosuid"}
			if ro {
				opts = []string{"ro"}
			}
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/data", Type: "ext4", Source: loop.path, Options: opts})
		}
	}
	writer := e.container("writer", []string{"sh", "-c", "cat /data/from-host.txt; echo from-container > /data/out.txt; grep ' /data ' /proc/self/mounts | cut -d' ' -f3"}, volume(false))
	reader := e.container("reader", []string{"sh", "-c", "cat /data/from-host.txt; touch /data/ro-check 2>/dev/null && echo writable || echo read-only"}, volume(true))
	if got := e.disks(); len(got) != 1 {
		t.Fatalf("disks with two containers on one volume: got %q, want one", got)
	}
	// The host never mounts the device: only the guest does.
	if mounts, err := os.ReadFile("/proc/self/mountinfo"); err != nil {
		t.Fatal(err)
	} else if strings.Contains(string(mounts), " "+loop.path+" ") {
		t.Errorf("the host mounted %s:\n%s", loop.path, mounts)
	}
	code, out, stderr := e.run(writer, nil)
	if code != 0 || out != "written on the host\next4\n" {
		t.Errorf("writer: exit %d, stdout %q (want the host's file and ext4), stderr %q", code, out, stderr)
	}
	code, out, stderr = e.run(reader, nil)
	if code != 0 || out != "written on the host\nread-only\n" {
		t.Errorf("reader: exit %d, stdout %q (want the host's file, read-only), stderr %q", code, out, stderr)
	}
	e.deleteContainer("writer")
	if got := e.disks(); len(got) != 1 {
		t.Errorf("disks after the first of two users is deleted: got %q, want one", got)
	}
	e.deleteContainer("reader")
	if got := e.disks(); len(got) != 0 {
		t.Errorf("disks after the last user is deleted: got %q, want none", got)
	}
	// The guest unmounted and released the device: its writes are on the host's file.
	if got := debugfsCat(t, loop.file, "out.txt"); got != "from-container\n" {
		t.Errorf("out.txt on the device: got %q", got)
	}
}

// TestDiskRefusals checks that bad input is refused with a clear error and leaves no disk
// in the VM: a device the host does not have, a file system the guest kernel lacks, a disk
// mount whose source is not a block device, and a read-write use of a device attached
// read-only for another container.
func TestDiskRefusals(t *testing.T) {
	loop := newLoop(t, 8, map[string]string{"x": "x"})
	e := newEnv(t)
	for _, tc := range []struct {
		name string
		edit func(*specs.Spec)
		want string
	}{
		{"missing device", func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/data", Type: "ext4", Source: "/dev/vessel-test-missing"})
		}, "mount /data (ext4 /dev/vessel-test-missing): no such file or directory"},
		{"fs type the guest lacks", func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/data", Type: "btrfs", Source: loop.path})
		}, `fstype "btrfs" is not a block file system of the guest kernel`},
		{"not a block device", func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/data", Type: "ext4", Source: "/dev/null"})
		}, "not a block device"},
		{"bind mount of a block device", func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/dev/xvdc", Type: "bind", Source: loop.path, Options: []string{"bind"}})
		}, "bind mount of block device " + loop.path},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.tryContainer("bad", []string{"true"}, tc.edit)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
			if got := e.disks(); len(got) != 0 {
				t.Errorf("disks after a refused container: got %q, want none", got)
			}
			if _, err := e.sb.Container("bad"); err == nil {
				t.Error("the refused container is still known")
			}
		})
	}
	// The device is usable afterwards: nothing kept it attached or open.
	c := e.container("ok", []string{"cat", "/data/x"}, func(s *specs.Spec) {
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/data", Type: "ext4", Source: loop.path, Options: []string{"ro"}})
	})
	if code, out, stderr := e.run(c, nil); code != 0 || out != "x" {
		t.Errorf("after the refusals: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	// A device attached read-only for one container cannot be used read-write by another;
	// the refusal leaves the first container's disk as it was.
	_, err := e.tryContainer("rw", []string{"true"}, func(s *specs.Spec) {
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/data", Type: "ext4", Source: loop.path, Options: []string{"rw"}})
	})
	if err == nil || !strings.Contains(err.Error(), "attached read-only for another container") {
		t.Errorf("read-write use of a read-only disk: got %v", err)
	}
	if got := e.disks(); len(got) != 1 {
		t.Errorf("disks after the refused read-write use: got %q, want the read-only one", got)
	}
	e.deleteContainer("ok")
	if got := e.disks(); !slices.Equal(got, nil) {
		t.Errorf("disks at the end: got %q", got)
	}
}

// tryContainer is env.container that returns the creation's error.
func (e *env) tryContainer(id string, args []string, edit func(*specs.Spec)) (*Container, error) {
	e.t.Helper()
	dir := e.t.TempDir()
	spec, err := bundle.CreateBusybox(dir, args, false)
	if err != nil {
		e.t.Fatal(err)
	}
	if edit != nil {
		edit(spec)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	plan, err := oci.ContainerConfig(ctx, id, dir, spec, oci.Options{})
	if err != nil {
		return nil, err
	}
	return e.sb.CreateContainer(ctx, ContainerConfig{Plan: plan, Stdin: true})
}

// TestRootfsDisk runs a container whose root file system is a disk, as containerd's
// snapshotters give it: a block device (devmapper; here a loop device) and an image file
// with the loop option (blockfile; no loop device is made). The guest mounts the disk as
// the root (not 9p), the container's writes land on it, and the disk leaves the VM with
// the container.
func TestRootfsDisk(t *testing.T) {
	for _, kind := range []string{"devmapper", "blockfile"} {
		t.Run(kind, func(t *testing.T) { testRootfsDisk(t, kind == "blockfile") })
	}
}

func testRootfsDisk(t *testing.T, file bool) {
	testutil.RequiresVM(t)
	dir := t.TempDir()
	spec, err := bundle.CreateBusybox(dir, []string{"sh", "-c", "grep ' / ' /proc/self/mounts | cut -d' ' -f3; cat /etc/marker; echo from-container > /written"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rootfs/etc/marker"), []byte("on the disk\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	loop := newLoopFrom(t, 32, filepath.Join(dir, "rootfs"))
	rootfs := specs.Mount{Type: "ext4", Source: loop.path}
	if file {
		rootfs = specs.Mount{Type: "ext4", Source: loop.file, Options: []string{"rw", "loop"}}
	}
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	plan, err := oci.ContainerConfig(ctx, "rd", dir, spec, oci.Options{})
	if err != nil {
		t.Fatal(err)
	}
	plan.RootfsDisk = oci.RootfsDisk([]specs.Mount{rootfs}, e.sb.Effective())
	if plan.RootfsDisk == nil {
		t.Fatalf("%+v is not a rootfs disk", rootfs)
	}
	c, err := e.sb.CreateContainer(ctx, ContainerConfig{Plan: plan, Stdin: true})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if got := e.disks(); len(got) != 1 {
		t.Errorf("disks: got %q, want the rootfs disk", got)
	}
	code, out, stderr := e.run(c, nil)
	if code != 0 || out != "ext4\non the disk\n" {
		t.Errorf("exit %d, stdout %q (want an ext4 root with the disk's files), stderr %q", code, out, stderr)
	}
	e.deleteContainer("rd")
	if got := e.disks(); len(got) != 0 {
		t.Errorf("disks after delete: got %q, want none", got)
	}
	if got := debugfsCat(t, loop.file, "written"); got != "from-container\n" {
		t.Errorf("/written on the disk: got %q", got)
	}
}

// TestDiskRateLimit writes 2 MiB to a raw disk limited to 512 KiB/s: the write and its
// flush cannot end before the limit lets the bytes through (nominally 4 s; at least 2 s
// counting a first burst).
func TestDiskRateLimit(t *testing.T) {
	loop := newLoop(t, 8, nil)
	e := newEnvWith(t, func(c *Config) { c.VM.Block.MaxBytesPerSec = 512 << 10 })
	c := e.container("limited", []string{"dd", "if=/dev/zero", "of=/dev/xvdb", "bs=64k", "count=32", "conv=fsync"}, func(s *specs.Spec) {
		s.Linux.Devices = append(s.Linux.Devices, specs.LinuxDevice{Path: "/dev/xvdb", Type: "b", Major: loop.major, Minor: loop.minor})
		if s.Linux.Resources == nil {
			s.Linux.Resources = &specs.LinuxResources{}
		}
		s.Linux.Resources.Devices = append(s.Linux.Resources.Devices, specs.LinuxDeviceCgroup{Allow: true, Type: "b", Major: &loop.major, Minor: &loop.minor, Access: "rwm"})
	})
	begin := time.Now()
	code, _, stderr := e.run(c, nil)
	took := time.Since(begin)
	if code != 0 {
		t.Fatalf("dd: exit %d, stderr %q", code, stderr)
	}
	if took < 2*time.Second {
		t.Errorf("2 MiB through a 512 KiB/s limit took %v, want at least 2 s", took)
	}
	t.Logf("2 MiB at 512 KiB/s: %v", took)
	e.deleteContainer("limited")
}
