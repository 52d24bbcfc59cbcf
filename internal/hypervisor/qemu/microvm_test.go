package qemu

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/vessel-containers/vessel/internal/hypervisor"
)

// TestCommandLineMicroVM pins the whole command line of the smallest microvm config under
// TCG: virtio-mmio devices, no PCI bridge, and the TSC frequency for the guest.
func TestCommandLineMicroVM(t *testing.T) {
	cfg := baseConfig()
	cfg.MachineType = "microvm"
	l := tcgLaunch
	l.tscKHz = 2596123
	got := commandLine(&cfg, l)
	want := []string{
		"-name", "vessel-sb1",
		"-machine", "microvm,acpi=off",
		"-nodefaults", "-no-user-config",
		"-display", "none", "-vga", "none",
		"-no-reboot",
		"-msg", "timestamp=on",
		"-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
		"-accel", "tcg,tb-size=64", "-cpu", "max",
		"-smp", "1,maxcpus=1",
		"-m", "256M",
		"-kernel", "/guest/vmlinux",
		"-initrd", "/guest/initramfs.img",
		"-append", "console=ttyS0 panic=-1 no_timer_check nolapic_timer tsc_early_khz=2596123 tsc=reliable quiet",
		"-chardev", "socket,id=console,fd=5,server=on,wait=off",
		"-serial", "chardev:console",
		"-chardev", "socket,id=qmp,fd=3,server=on,wait=off",
		"-mon", "chardev=qmp,mode=control",
		"-device", "virtio-serial-device,id=vessel-serial",
		"-chardev", "socket,id=agent,fd=4,server=on,wait=off",
		"-device", "virtserialport,bus=vessel-serial.0,chardev=agent,name=vessel.agent",
		"-object", "rng-random,id=vessel-rng,filename=/dev/urandom",
		"-device", "virtio-rng-device,rng=vessel-rng",
		"-device", "virtio-balloon-device,id=vessel-balloon,free-page-reporting=on",
	}
	if !slices.Equal(got, want) {
		t.Errorf("command line:\n got %q\nwant %q", got, want)
	}
}

// TestCommandLineMicroVMDevices checks the shared file systems and cold NICs of a microvm:
// virtio-mmio models, no PCI address, no bridge, no SCSI controller; and that KVM gets no
// TSC parameters.
func TestCommandLineMicroVMDevices(t *testing.T) {
	for _, tc := range []struct {
		fs   hypervisor.SharedFS
		want string
	}{
		{hypervisor.SharedFS9P, "virtio-9p-device,fsdev=vessel-share,mount_tag=rootfs"},
		{hypervisor.SharedFSVirtioFS, "vhost-user-fs-device,chardev=vessel-share,tag=rootfs,queue-size=1024"},
	} {
		cfg := baseConfig()
		cfg.MachineType = "microvm"
		cfg.SharedFS, cfg.SharedDir, cfg.ShareTag, cfg.VirtioFSSocket = tc.fs, "/share", "rootfs", "/run/fs.sock"
		cfg.NICs = []hypervisor.NIC{{ID: "eth0", MAC: "02:00:00:00:00:01"}}
		l := launch{accel: hypervisor.AccelKVM, qmpFD: 3, agentFD: 4, consoleFD: 5, nics: []nicFDs{{taps: []int{6}}}}
		args := commandLine(&cfg, l)
		joined := strings.Join(args, " ")
		for _, want := range []string{tc.want, "virtio-net-device,id=vnic-eth0,netdev=eth0,mac=02:00:00:00:00:01"} {
			if !slices.Contains(args, want) {
				t.Errorf("%s: no -device %q in %q", tc.fs, want, args)
			}
		}
		for _, bad := range []string{"-pci", "pci-bridge", "bus=vessel-bridge0", "tsc_early_khz", "scsi"} {
			if strings.Contains(joined, bad) {
				t.Errorf("%s: microvm command line has %q: %q", tc.fs, bad, args)
			}
		}
	}
}

// TestMicroVMRefusals checks that New refuses, naming the key, what needs hotplug.
func TestMicroVMRefusals(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*hypervisor.Config)
		want string
	}{
		{"vcpus", func(c *hypervisor.Config) { c.MaxVCPUs = 2 }, "hypervisor.default_maxvcpus"},
		{"memory", func(c *hypervisor.Config) { c.MaxMemoryMiB = 512 }, "hypervisor.default_maxmemory"},
		{"template", func(c *hypervisor.Config) {
			c.Template = &hypervisor.Template{Mode: hypervisor.TemplateSave, MemoryPath: "/tpl/mem", StatePath: "/tpl/state"}
		}, "factory.enable_template"},
		{"scsi", func(c *hypervisor.Config) { c.Block.Driver = hypervisor.BlockVirtioSCSI }, "hypervisor.block_device_driver"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig()
			cfg.MachineType = "microvm"
			tc.edit(&cfg)
			_, err := New(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), `"microvm"`) || !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("New: %v, want an invalid-argument error naming %s and microvm", err, tc.want)
			}
			// The same settings are fine on q35.
			cfg.MachineType = "q35"
			if _, err := New(cfg); err != nil {
				t.Fatalf("New on q35: %v", err)
			}
		})
	}
	cfg := baseConfig()
	cfg.MachineType = "microvm,acpi=on"
	cfg.MaxVCPUs, cfg.MaxMemoryMiB = 1, 256
	if _, err := New(cfg); err != nil {
		t.Fatalf("New of a microvm without hotplug: %v", err)
	}
}

// TestFakeMicroVMHotplugRefused starts a microvm on the fake QEMU and checks that disk and
// NIC hotplug fail with the machine named, without any device command reaching QEMU.
func TestFakeMicroVMHotplugRefused(t *testing.T) {
	if hostTSCKHz() == 0 {
		t.Skip("host TSC is not constant and non-stop: a microvm cannot run under TCG here")
	}
	vm, cfg := startNormalFake(t, "microvm", func(c *hypervisor.Config) { c.MachineType = "microvm" })
	ctx := fakeCtx(t)
	_, err := vm.AttachDisk(ctx, hypervisor.Disk{ID: "d0", File: diskFile(t)})
	checkMicroVMErr(t, "attach disk", err)
	_, err = vm.AttachNIC(ctx, hypervisor.NIC{ID: "eth1", MAC: "02:00:00:00:00:02", Tap: pipeFile(t)})
	checkMicroVMErr(t, "attach nic", err)
	checkMicroVMErr(t, "detach nic", vm.DetachNIC(ctx, "eth0"))
	for _, l := range qmpLog(t, cfg) {
		if strings.HasPrefix(l, "device_add") || strings.HasPrefix(l, "blockdev-add") || strings.HasPrefix(l, "netdev_add") || strings.HasPrefix(l, "add-fd") || strings.HasPrefix(l, "getfd") {
			t.Errorf("qemu got %s", l)
		}
	}
	if st, err := vm.State(ctx); err != nil || st != hypervisor.StateRunning {
		t.Fatalf("state after refused hotplug: %v, %v", st, err)
	}
}

func checkMicroVMErr(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), `hypervisor.machine_type "microvm" has no hotplug`) || !errors.Is(err, errdefs.ErrNotImplemented) {
		t.Errorf("%s: %v, want a not-implemented error naming the microvm machine", what, err)
	}
}

// TestHostTSCKHz checks that two measurements of the host's TSC agree and lie in a
// plausible range.
func TestHostTSCKHz(t *testing.T) {
	a := measureTSCKHz()
	if a == 0 {
		t.Skip("host TSC is not constant and non-stop, or this is not amd64")
	}
	b := measureTSCKHz()
	if a < 100_000 || a > 10_000_000 {
		t.Fatalf("TSC %d kHz: not between 100 MHz and 10 GHz", a)
	}
	if d := math.Abs(float64(a)-float64(b)) / float64(a); d > 0.002 {
		t.Fatalf("two measurements differ by %.3f %%: %d and %d kHz", d*100, a, b)
	}
}
