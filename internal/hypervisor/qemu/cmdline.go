package qemu

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/vessel-containers/vessel/internal/hypervisor"
)

// Defaults and names of the files the driver creates in Config.StateDir.
const (
	DefaultBinary = "/usr/bin/qemu-system-x86_64"

	defaultMachine   = "q35"
	defaultTBSizeMiB = 64
	// hotplugTBSizeMiB is the default translation cache of a VM that may get vCPUs
	// hot-plugged. QEMU 7.2 cuts the cache into at most 8 regions per possible vCPU and
	// aborts (tcg_region_initial_alloc__locked) when a hot-plugged vCPU finds every
	// region taken by the running ones since the last flush; larger regions make that
	// need far more translated code than a sandbox produces before it grows. Pages of the
	// cache cost memory only once code is translated into them.
	hotplugTBSizeMiB   = 256
	defaultMemorySlots = 8
	defaultEntropy     = "/dev/urandom"

	// AgentPortName is the virtio-serial port the agent opens in the guest; it finds it by
	// name under /sys/class/virtio-ports/*/name.
	AgentPortName = "vessel.agent"

	qmpSocketName     = "qmp.sock"
	agentSocketName   = "agent.sock"
	consoleSocketName = "console.sock"
	qemuLogName       = "qemu.log"

	// Object and device ids on the QEMU command line.
	idQMP     = "qmp"
	idAgent   = "agent"
	idConsole = "console"
	idShare   = "vessel-share"
	idRAM     = "vessel-ram"
	idRNG     = "vessel-rng"
)

// baseKernelParams go before Config.KernelParams: serial console; a kernel panic reboots
// at once, which -no-reboot turns into a QEMU exit instead of a hung VM; and no_timer_check,
// because the boot-time check that the 8254 timer reaches the IO-APIC counts ticks in a
// fixed window and, with the host overcommitted (ten VMs starting at once on two cores),
// failed and panicked the guest ("IO-APIC + timer doesn't work!"). Virtual timers are
// wired correctly; Kata passes the same parameter.
var baseKernelParams = []string{"console=ttyS0", "panic=-1", "no_timer_check"}

// tcgKernelParams follow baseKernelParams under TCG only. nolapic_timer: without a
// TSC-deadline timer or a hypervisor-provided APIC frequency the kernel calibrates the
// local APIC timer against the PIT for 100 ms of guest time, which under TCG was 0.12 s of
// every start (docs/benchmarks.md). The HPET drives the tick instead (broadcast to further
// vCPUs); idle CPU use did not change. KVM guests keep the local APIC timer: their
// TSC-deadline timer needs no calibration.
var tcgKernelParams = []string{"nolapic_timer"}

// seccompSandbox is QEMU's seccomp filter, installed before QEMU creates the machine:
// "on" denies the default list, and the rest deny obsolete system calls, changing
// credentials (setuid, setgid, ...), spawning processes (fork, vfork, execve) and
// changing scheduling and affinity. Template save and restore migrate through a
// descriptor, not "exec:", so they need no spawning. A QEMU built without seccomp
// refuses the option at start (sandboxUnsupported), which fails the start.
const seccompSandbox = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"

// sandboxUnsupportedMsg is what a QEMU built without seccomp says when given -sandbox.
const sandboxUnsupportedMsg = "-sandbox support is not enabled in this QEMU binary"

// launch is what the command line needs besides the Config: decisions taken at Start.
type launch struct {
	// accel is the resolved accelerator: hypervisor.AccelKVM or hypervisor.AccelTCG.
	accel hypervisor.Accelerator
	// qmpFD, agentFD and consoleFD are the child's descriptors of the listening sockets
	// the driver created (exec.Cmd.ExtraFiles start at 3).
	qmpFD     int
	agentFD   int
	consoleFD int
	// nics are the child's descriptors of each Config.NICs entry, in order.
	nics []nicFDs
	// readOnlyRAM opens a restored template's memory file read-only (QEMU 8.2 and newer).
	readOnlyRAM bool
	// tscKHz is the host's TSC frequency, given to a microvm guest under TCG (tsc.go);
	// 0 otherwise.
	tscKHz uint64
}

// nicFDs are the child's descriptors of one NIC: its tap queues, and their vhost-net
// devices (none without vhost-net).
type nicFDs struct {
	taps   []int
	vhosts []int
}

// kernelCmdline is the guest kernel command line for cfg under l.accel. Debug drops
// "quiet" so the console shows the kernel's messages; Debug and AgentDebug ask the agent
// for debug logs. A microvm guest under TCG is told the TSC's frequency and that the TSC is
// reliable (it is the host's constant, non-stop counter), as it has nothing to calibrate
// it against (tsc.go).
func kernelCmdline(cfg *hypervisor.Config, l launch) string {
	params := append([]string{}, baseKernelParams...)
	if l.accel == hypervisor.AccelTCG {
		params = append(params, tcgKernelParams...)
		if l.tscKHz != 0 {
			params = append(params, fmt.Sprintf("tsc_early_khz=%d", l.tscKHz), "tsc=reliable")
		}
	}
	if !cfg.Debug {
		params = append(params, "quiet")
	}
	if cfg.Debug || cfg.AgentDebug {
		params = append(params, "vessel.log=debug")
	}
	params = append(params, cfg.KernelParams...)
	return strings.Join(params, " ")
}

// commandLine returns QEMU's arguments (without argv[0]) for cfg. It is a pure function:
// it checks nothing on the host. cfg must have passed Validate.
//
// Not supported yet: multiqueue NICs, disks at boot (they are hot-plugged: disk.go) and
// vsock. Machines are q35-like PC machines or microvm (microvm.go), whose devices are the
// virtio-mmio variants and which has no PCI bridge and no SCSI controller.
func commandLine(cfg *hypervisor.Config, l launch) []string {
	machine := cfg.MachineType
	if machine == "" {
		machine = defaultMachine
	}
	if isMicroVM(cfg) {
		// Without ACPI: with microvm's ACPI tables the guest's PIT interrupt never arrived
		// under TCG (its clock stood still after boot). The devices are then named on the
		// kernel command line by QEMU (virtio_mmio.device=); a guest power-off halts the
		// vCPU instead of ending QEMU, and Stop ends QEMU with QMP quit as always.
		machine += ",acpi=off"
	}
	virtioFS := cfg.SharedFS == hypervisor.SharedFSVirtioFS
	templateRAM := templateRAM(cfg, l.readOnlyRAM) // template.go; templates refuse virtio-fs
	if virtioFS || templateRAM != "" {
		// vhost-user needs guest RAM in shared memory that virtiofsd can map; a
		// template's RAM is a file.
		machine += ",memory-backend=" + idRAM
	}
	if cfg.MachineAccelerators != "" {
		machine += "," + cfg.MachineAccelerators
	}

	args := []string{
		"-name", "vessel-" + optPath(cfg.ID),
		"-machine", machine,
		"-nodefaults", "-no-user-config",
		"-display", "none", "-vga", "none",
		"-no-reboot",
		"-msg", "timestamp=on",
		"-sandbox", seccompSandbox,
	}

	cpu := "host"
	switch l.accel {
	case hypervisor.AccelKVM:
		args = append(args, "-accel", "kvm")
	default:
		tb := cfg.TBSizeMiB
		switch {
		case tb != 0:
		case cfg.MaxVCPUs > cfg.VCPUs:
			tb = hotplugTBSizeMiB
		default:
			tb = defaultTBSizeMiB
		}
		// -cpu max gives the guest RDRAND, which it trusts for early entropy.
		args = append(args, "-accel", fmt.Sprintf("tcg,tb-size=%d", tb))
		cpu = "max"
	}
	if cfg.CPUFeatures != "" {
		cpu += "," + cfg.CPUFeatures
	}
	args = append(args, "-cpu", cpu)

	maxCPUs := cfg.MaxVCPUs
	if maxCPUs < cfg.VCPUs {
		maxCPUs = cfg.VCPUs
	}
	args = append(args, "-smp", fmt.Sprintf("%d,maxcpus=%d", cfg.VCPUs, maxCPUs))

	mem := fmt.Sprintf("%dM", cfg.MemoryMiB)
	if cfg.MaxMemoryMiB > cfg.MemoryMiB {
		slots := cfg.MemorySlots
		if slots == 0 {
			slots = defaultMemorySlots
		}
		mem += fmt.Sprintf(",slots=%d,maxmem=%dM", slots, cfg.MaxMemoryMiB)
	}
	args = append(args, "-m", mem)
	if cfg.MemPrealloc {
		// Applies to every memory backend: the default RAM, the template file (whose
		// private mapping in a restored VM becomes a full copy, since every page is
		// touched), the memfd of virtio-fs and memory hot-plugged later.
		args = append(args, "-mem-prealloc")
	}
	if templateRAM != "" {
		args = append(args, "-object", templateRAM)
	} else if virtioFS {
		args = append(args, "-object",
			fmt.Sprintf("memory-backend-memfd,id=%s,size=%dM,share=on", idRAM, cfg.MemoryMiB))
	}

	args = append(args, "-kernel", cfg.Kernel)
	if cfg.Initrd != "" {
		args = append(args, "-initrd", cfg.Initrd)
	}
	args = append(args, "-append", kernelCmdline(cfg, l))

	// Serial console on the listening socket the driver created; the VM's owner reads it
	// (console.go).
	args = append(args,
		"-chardev", fmt.Sprintf("socket,id=%s,fd=%d,server=on,wait=off", idConsole, l.consoleFD),
		"-serial", "chardev:"+idConsole,
	)

	// QMP on the listening socket the driver created.
	args = append(args,
		"-chardev", fmt.Sprintf("socket,id=%s,fd=%d,server=on,wait=off", idQMP, l.qmpFD),
		"-mon", fmt.Sprintf("chardev=%s,mode=control", idQMP),
	)

	// The agent channel: a virtio-serial port backed by the driver's listening socket.
	args = append(args,
		"-device", deviceModel(cfg, "virtio-serial-pci")+",id=vessel-serial",
		"-chardev", fmt.Sprintf("socket,id=%s,fd=%d,server=on,wait=off", idAgent, l.agentFD),
		"-device", fmt.Sprintf("virtserialport,bus=vessel-serial.0,chardev=%s,name=%s", idAgent, AgentPortName),
	)

	// Entropy for the guest.
	entropy := cfg.EntropySource
	if entropy == "" {
		entropy = defaultEntropy
	}
	args = append(args,
		"-object", fmt.Sprintf("rng-random,id=%s,filename=%s", idRNG, optPath(entropy)),
		"-device", fmt.Sprintf("%s,rng=%s", deviceModel(cfg, "virtio-rng-pci"), idRNG),
	)

	switch cfg.SharedFS {
	case hypervisor.SharedFS9P:
		// The 9p msize is a guest mount option (Config.Msize9P is for the agent), not a
		// device property. multidevs=remap keeps inode numbers unique across host mounts.
		args = append(args,
			"-fsdev", fmt.Sprintf("local,id=%s,path=%s,security_model=none,multidevs=remap", idShare, optPath(cfg.SharedDir)),
			"-device", fmt.Sprintf("%s,fsdev=%s,mount_tag=%s", deviceModel(cfg, "virtio-9p-pci"), idShare, optPath(cfg.ShareTag)),
		)
	case hypervisor.SharedFSVirtioFS:
		args = append(args,
			"-chardev", fmt.Sprintf("socket,id=%s,path=%s", idShare, optPath(cfg.VirtioFSSocket)),
			"-device", fmt.Sprintf("%s,chardev=%s,tag=%s,queue-size=1024", deviceModel(cfg, "vhost-user-fs-pci"), idShare, optPath(cfg.ShareTag)),
		)
	}

	// The bridge that disks and NICs are plugged into, and the SCSI controller for the
	// virtio-scsi driver (disk.go). A microvm has neither (microvmRefusal refuses
	// virtio-scsi): its NICs are virtio-mmio devices that stay for the VM's life.
	if !isMicroVM(cfg) {
		args = append(args, bridgeArgs()...)
		args = append(args, scsiArgs(cfg.Block)...)
	}

	// Network devices on the tap descriptors the caller opened in the pod's network
	// namespace (QEMU never joins it), in the bridge's first slots so that they can be
	// unplugged (nic.go). The guest NIC takes the pod interface's MAC.
	for i, n := range cfg.NICs {
		dev := nicDeviceArg(n, coldNICSlot(i))
		if isMicroVM(cfg) {
			dev = microvmNICArg(n)
		}
		args = append(args, "-netdev", netdevArg(n.ID, l.nics[i]), "-device", dev)
	}

	// Free page reporting hands pages the guest frees back to the host.
	args = append(args, "-device", deviceModel(cfg, "virtio-balloon-pci")+",id=vessel-balloon,free-page-reporting="+freePageReporting(cfg))
	return append(args, templateArgs(cfg)...)
}

// optPath escapes a path for a QEMU option value, where a comma is written twice.
func optPath(p string) string { return strings.ReplaceAll(p, ",", ",,") }

// netdevArg is the -netdev value of a tap netdev on the child's descriptors fds: fd= and
// vhostfd= for one queue, fds= and vhostfds= (colon-separated) for several.
func netdevArg(id string, fds nicFDs) string {
	join := func(fds []int) string {
		s := make([]string, len(fds))
		for i, fd := range fds {
			s[i] = strconv.Itoa(fd)
		}
		return strings.Join(s, ":")
	}
	if len(fds.taps) == 1 {
		netdev := fmt.Sprintf("tap,id=%s,fd=%d", id, fds.taps[0])
		if len(fds.vhosts) == 1 {
			netdev += fmt.Sprintf(",vhost=on,vhostfd=%d", fds.vhosts[0])
		}
		return netdev
	}
	netdev := fmt.Sprintf("tap,id=%s,fds=%s", id, join(fds.taps))
	if len(fds.vhosts) > 0 {
		netdev += ",vhost=on,vhostfds=" + join(fds.vhosts)
	}
	return netdev
}
