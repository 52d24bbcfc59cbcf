// Package hypervisor defines the virtual machine interface Vessel drives (VM), the registry
// of drivers, and the optional interfaces a driver's VMs may implement (ConsoleTailer;
// TemplateSaver, Detacher, Resizer in factory.go; DiskHotplugger in disk.go;
// NICHotplugger in nic.go).
//
// A driver registers itself from an init function with a Driver value: how to create its
// VMs and what they can do (Capabilities). Binaries pick the drivers they carry with blank
// imports; the one driver in the tree is qemu (package hypervisor/qemu). Code outside a
// driver asks the registry (New, CapabilitiesOf, Drivers) and never names a driver type,
// its command line or its files other than those this package defines (ConsoleLogName).
// Every driver runs the conformance suite in package hvtest.
package hypervisor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/vessel-containers/vessel/internal/idrange"
)

// Accelerator selects how guest code runs.
type Accelerator string

const (
	// AccelAuto uses KVM when /dev/kvm is usable and software emulation otherwise.
	AccelAuto Accelerator = "auto"
	// AccelKVM requires KVM.
	AccelKVM Accelerator = "kvm"
	// AccelTCG forces software emulation (QEMU's TCG).
	AccelTCG Accelerator = "tcg"
)

// SharedFS is how the host shares a directory with the guest.
type SharedFS string

const (
	SharedFSNone     SharedFS = "none"
	SharedFS9P       SharedFS = "virtio-9p"
	SharedFSVirtioFS SharedFS = "virtio-fs"
)

// Config is everything a driver needs to boot one VM. Paths are absolute.
type Config struct {
	// ID names the VM (the sandbox id); it appears in process titles and logs.
	ID string
	// StateDir is a directory owned by this VM for sockets, logs and pid files. The driver
	// creates files only inside it; the caller creates and removes the directory.
	StateDir string

	// Path is the hypervisor binary; empty means the driver's default.
	Path string
	// Kernel is the guest kernel (vmlinux with a PVH note, or bzImage).
	Kernel string
	// Initrd is the initramfs holding the agent.
	Initrd string
	// KernelParams are appended to the driver's own kernel command line.
	KernelParams []string

	Accelerator Accelerator
	// MachineType, e.g. "q35"; empty means the driver's default.
	MachineType string
	// MachineAccelerators are extra comma-separated machine options (key=value words).
	MachineAccelerators string
	// CPUFeatures are comma-separated options of the guest CPU model, e.g. "pmu=off".
	CPUFeatures string

	// VCPUs at boot and the hotplug maximum (MaxVCPUs >= VCPUs).
	VCPUs    uint32
	MaxVCPUs uint32
	// MemoryMiB at boot and the hotplug maximum (MaxMemoryMiB >= MemoryMiB).
	MemoryMiB    uint32
	MaxMemoryMiB uint32
	MemorySlots  uint32
	// MemPrealloc allocates all guest memory when the VMM starts, and any memory added later
	// when it is added.
	MemPrealloc bool

	// SharedFS, SharedDir and ShareTag describe the directory shared with the guest.
	SharedFS  SharedFS
	SharedDir string
	ShareTag  string
	// Msize9P is the 9p message size in bytes (0: driver default).
	Msize9P uint32
	// VirtioFSSocket is the vhost-user-fs socket of a running virtiofsd (virtio-fs only).
	VirtioFSSocket string

	// NICs are the VM's network devices, in guest PCI order.
	NICs []NIC

	// Block is how disks are attached (DiskHotplugger).
	Block BlockConfig

	// EntropySource is the host file behind the guest's virtio-rng device (empty: the
	// driver's default, /dev/urandom).
	EntropySource string

	// TBSizeMiB is QEMU's TCG translation-cache size (0: driver default). Ignored under KVM.
	TBSizeMiB uint32
	// Debug keeps the guest console log verbose (kernel messages) and asks the agent for
	// debug logs.
	Debug bool
	// AgentDebug asks the agent alone for debug logs.
	AgentDebug bool

	// Template boots the VM as a template or from one (factory.go); nil boots cold.
	Template *Template
	// Adopt makes Start attach to a running VMM handed over by another process.
	Adopt *Adoption
	// Handover starts the VMM so that it can outlive this process (no parent-death
	// signal), for a VM that Detacher.Detach will hand to another process.
	Handover bool

	// UserNS, when set, runs the VMM as root of a user namespace of its own whose ids are
	// UserNS's unprivileged host ids: it holds capabilities only there. Everything it
	// opens by path (kernel, initrd, the shared dir and the directories above them) must
	// be reachable by those ids; the shared dir's root and the virtiofsd socket are made
	// theirs by the caller.
	UserNS *idrange.Range
}

// Validate reports the first field that makes the config unusable.
func (c *Config) Validate() error {
	switch {
	case c.ID == "":
		return errors.New("vm config: id is empty")
	case c.StateDir == "":
		return errors.New("vm config: state dir is empty")
	case c.Kernel == "":
		return errors.New("vm config: kernel path is empty")
	case c.VCPUs == 0:
		return errors.New("vm config: vcpus must be at least 1")
	case c.MaxVCPUs != 0 && c.MaxVCPUs < c.VCPUs:
		return fmt.Errorf("vm config: max vcpus %d is below vcpus %d", c.MaxVCPUs, c.VCPUs)
	case c.MemoryMiB < 64:
		return fmt.Errorf("vm config: memory %d MiB is below the 64 MiB minimum", c.MemoryMiB)
	case c.MaxMemoryMiB != 0 && c.MaxMemoryMiB < c.MemoryMiB:
		return fmt.Errorf("vm config: max memory %d MiB is below memory %d MiB", c.MaxMemoryMiB, c.MemoryMiB)
	case c.SharedFS != "" && c.SharedFS != SharedFSNone && (c.SharedDir == "" || c.ShareTag == ""):
		return fmt.Errorf("vm config: shared fs %q needs a shared dir and a tag", c.SharedFS)
	case c.UserNS != nil && (c.Template != nil || c.Adopt != nil || c.Handover):
		return errors.New("vm config: a VMM in a user namespace cannot be a template, from a template or handed over")
	case c.UserNS != nil && c.UserNS.Size == 0:
		return errors.New("vm config: user namespace id range is empty")
	}
	if err := c.Block.validate(); err != nil {
		return fmt.Errorf("vm config: %w", err)
	}
	ids := map[string]bool{}
	for i, n := range c.NICs {
		if err := n.Validate(); err != nil {
			return fmt.Errorf("vm config: nic %d: %w", i, err)
		}
		if ids[n.ID] {
			return fmt.Errorf("vm config: nic %d: id %q is used twice", i, n.ID)
		}
		ids[n.ID] = true
	}
	return nil
}

// NIC is a virtio-net device backed by a tap device the caller opened (package network).
// The driver passes the descriptors to the VMM; the caller keeps ownership and closes its
// copies once Start returned.
type NIC struct {
	// ID names the device for the VMM: letters, digits, '-' and '_'.
	ID string
	// MAC is the guest NIC's Ethernet address.
	MAC string
	// Tap is the tap queue's descriptor (opened with IFF_TAP|IFF_NO_PI|IFF_VNET_HDR).
	Tap *os.File
	// Vhost, when set, is an open /dev/vhost-net: the kernel moves the packets.
	Vhost *os.File
}

// Validate reports what makes the NIC unusable.
func (n NIC) Validate() error {
	if n.ID == "" || !validName(n.ID) {
		return fmt.Errorf("id %q: want letters, digits, '-' and '_'", n.ID)
	}
	if hw, err := net.ParseMAC(n.MAC); err != nil || len(hw) != 6 {
		return fmt.Errorf("%s: mac %q is not an Ethernet address", n.ID, n.MAC)
	}
	if n.Tap == nil {
		return fmt.Errorf("%s: no tap descriptor", n.ID)
	}
	return nil
}

// validName tells whether s has only letters, digits, '-' and '_'.
func validName(s string) bool {
	return strings.TrimFunc(s, func(r rune) bool {
		return r == '-' || r == '_' || ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z') || ('0' <= r && r <= '9')
	}) == ""
}

// State is the run state of a VM as the hypervisor reports it.
type State string

const (
	StateRunning  State = "running"
	StatePaused   State = "paused"
	StateShutdown State = "shutdown"
)

// ConsoleLogName is the file in Config.StateDir where every driver writes the end of the
// guest's serial console, for operators: at most MaxConsoleLog bytes, the oldest output
// dropped first. Its content is guest text: escape it (package guesttext) before it goes
// into a host log or error.
const ConsoleLogName = "console.log"

// MaxConsoleLog bounds what a driver keeps of a guest's console, in memory and in
// ConsoleLogName each: a guest may write to its console without end, and the state
// directory is usually on tmpfs (host memory). 256 KiB holds a whole boot log with debug
// output (about 60 KiB under TCG) several times over, and the end of a kernel oops.
const MaxConsoleLog = 256 << 10

// ConsoleTailer is implemented by VMs that keep the end of the guest's serial console.
type ConsoleTailer interface {
	// ConsoleTail returns a copy of the last bytes the guest wrote to its console, at most
	// MaxConsoleLog. It is guest text: escape it before logging it.
	ConsoleTail() []byte
}

// AgentAddress tells the host how to reach the agent in the guest.
type AgentAddress struct {
	// Kind is "serial" (a unix socket connected to a virtio-serial port), "vsock" or
	// "hvsock" (hybrid vsock: unix socket plus "CONNECT <port>\n").
	Kind string
	// Path of the unix socket for serial and hvsock.
	Path string
	// CID and Port for vsock.
	CID  uint32
	Port uint32
}

// VM is one running virtual machine. Methods are safe for concurrent use.
type VM interface {
	// Start launches the VMM and returns once it is running (control socket connected). On
	// error nothing is left running.
	Start(ctx context.Context) error
	// Stop asks the guest to power off, waits up to the context deadline, then kills the
	// VMM and reaps it. Stop on a stopped VM returns nil.
	Stop(ctx context.Context) error
	Pause(ctx context.Context) error
	Resume(ctx context.Context) error
	// State queries the VMM.
	State(ctx context.Context) (State, error)
	// Agent is where the agent listens.
	Agent() AgentAddress
	// Pid of the VMM process (0 before Start).
	Pid() int
	// Done is closed when the VMM process has exited and been reaped; Err then tells why.
	Done() <-chan struct{}
	// Err is nil for a clean exit requested by Stop, and describes an unexpected exit
	// otherwise (including the tail of the console log, escaped: it is guest text).
	Err() error
}

// Capabilities is what every VM of a driver supports. It is part of the driver's
// registration, so it is known without creating a VM.
type Capabilities struct {
	// Templating: VMs boot as a template and from one (TemplateSaver), hand their VMM to
	// another process (Detacher) and grow while they run (Resizer): what the VM factory
	// needs.
	Templating bool
	// CPUHotplug and MemHotplug: VMs add vCPUs and memory while they run (Resizer).
	CPUHotplug bool
	MemHotplug bool
	// BlockHotplug: disks can be attached to a running VM (DiskHotplugger).
	BlockHotplug bool
	// NICHotplug: network devices can be attached to and detached from a running VM
	// (NICHotplugger).
	NICHotplug bool
	// SharedFS lists the ways the driver shares a directory with the guest
	// (Config.SharedFS); New refuses any other.
	SharedFS []SharedFS
	// Jailing: the driver confines its VMM itself (chroot, unprivileged user, seccomp).
	Jailing bool
}

// HasSharedFS reports whether the driver can share a directory with the guest by fs.
func (c Capabilities) HasSharedFS(fs SharedFS) bool { return slices.Contains(c.SharedFS, fs) }

// NewFunc creates an unstarted VM for a config that Config.Validate accepted.
type NewFunc func(cfg Config) (VM, error)

// Driver is what a driver registers.
type Driver struct {
	// New creates an unstarted VM.
	New NewFunc
	// Capabilities is what every VM New creates supports.
	Capabilities Capabilities
	// CheckJail, if set, tells whether the hypervisor binary at the given path can run
	// confined the way the driver confines it (nil when it can).
	CheckJail func(binary string) error
}

// registry holds the drivers; mu guards drivers.
var registry struct {
	mu      sync.Mutex
	drivers map[string]Driver
}

// Register makes a driver available by name. It panics on a duplicate name or a driver
// without New: those are programming errors caught at init.
func Register(name string, d Driver) {
	if d.New == nil {
		panic("hypervisor: driver " + name + " registered without New")
	}
	registry.mu.Lock()
	defer registry.mu.Unlock()
	if registry.drivers == nil {
		registry.drivers = map[string]Driver{}
	}
	if _, dup := registry.drivers[name]; dup {
		panic("hypervisor: driver registered twice: " + name)
	}
	d.Capabilities.SharedFS = slices.Clone(d.Capabilities.SharedFS)
	registry.drivers[name] = d
}

// lookup returns the named driver, or an error wrapping errdefs.ErrNotFound that names it
// and lists the drivers this binary has.
func lookup(name string) (Driver, error) {
	registry.mu.Lock()
	d, ok := registry.drivers[name]
	registry.mu.Unlock()
	if !ok {
		return Driver{}, fmt.Errorf("hypervisor driver %q is not built into this binary (built: %s): %w",
			name, strings.Join(Drivers(), ", "), errdefs.ErrNotFound)
	}
	return d, nil
}

// CapabilitiesOf is what the named driver supports. An unknown name is an error wrapping
// errdefs.ErrNotFound.
func CapabilitiesOf(name string) (Capabilities, error) {
	d, err := lookup(name)
	if err != nil {
		return Capabilities{}, err
	}
	c := d.Capabilities
	c.SharedFS = slices.Clone(c.SharedFS)
	return c, nil
}

// CheckJail asks the named driver whether binary can run confined (Driver.CheckJail);
// a driver without the check returns nil.
func CheckJail(name, binary string) error {
	d, err := lookup(name)
	if err != nil {
		return err
	}
	if d.CheckJail == nil {
		return nil
	}
	return d.CheckJail(binary)
}

// New creates an unstarted VM with the named driver. It refuses an unknown driver
// (errdefs.ErrNotFound), an invalid config, and a shared fs the driver does not support
// (errdefs.ErrNotImplemented).
func New(name string, cfg Config) (VM, error) {
	d, err := lookup(name)
	if err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.SharedFS != "" && cfg.SharedFS != SharedFSNone && !d.Capabilities.HasSharedFS(cfg.SharedFS) {
		return nil, fmt.Errorf("hypervisor driver %s cannot share a directory by %s (supported: %v): %w",
			name, cfg.SharedFS, d.Capabilities.SharedFS, errdefs.ErrNotImplemented)
	}
	return d.New(cfg)
}

// Drivers lists the registered driver names, sorted.
func Drivers() []string {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	names := make([]string, 0, len(registry.drivers))
	for n := range registry.drivers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
