//go:build linux

// Package libct is the agent's only door to runc's libcontainer (enforced by depguard): it
// converts OCI runtime specs, creates containers, starts and waits for their processes,
// and runs libcontainer's init entry point when the agent binary is re-executed as the
// container init ("runc init").
package libct

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	// Device rules of cgroup v2 (eBPF) are only applied when this package is linked.
	_ "github.com/opencontainers/cgroups/devices"
	"github.com/opencontainers/runc/libcontainer"
	// nsenter (cgo) runs before the Go runtime when the binary is re-executed as init.
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
	"github.com/opencontainers/runc/libcontainer/specconv"

	"github.com/vessel-containers/vessel/internal/agent/reaper"
)

// initEnv is set by libcontainer on every "runc init" it starts (standard and setns). The
// agent cannot look at argv: as PID 1 it gets unknown kernel command-line words as
// arguments.
const initEnv = "_LIBCONTAINER_INITPIPE"

// IsInit reports whether this process was started by libcontainer as a container init.
func IsInit() bool { return os.Getenv(initEnv) != "" }

// Init runs libcontainer's init. It does not return.
func Init() { libcontainer.Init() }

// SeccompSupported reports whether the binary can apply seccomp filters (built with cgo and
// the "seccomp" tag, linking libseccomp).
func SeccompSupported() bool { return seccompBuilt }

// Options describe a container to create.
type Options struct {
	ID string
	// Spec is the OCI runtime spec; root.path must be absolute.
	Spec *specs.Spec
	// StateRoot holds libcontainer's per-container state directories.
	StateRoot string
	// CgroupPath is the container's cgroup v2 path relative to the cgroup root, e.g.
	// /vessel/<id> or the spec's own linux.cgroupsPath. It replaces the spec's
	// linux.cgroupsPath.
	CgroupPath string
	// NSPaths are namespaces to join instead of creating new ones, by type (the spec's
	// entry of that type gets the path).
	NSPaths map[specs.LinuxNamespaceType]string
	// NetNSPath, when set, is the network namespace the container joins (the pod's),
	// whether or not the spec asks for a network namespace.
	NetNSPath string
	// Reaper, when set, is the agent's orphan reaper, which must leave the processes
	// libcontainer starts and waits for.
	Reaper *reaper.Reaper
}

// Container is a libcontainer container.
type Container struct {
	c *libcontainer.Container
	// reaper is the agent's orphan reaper (nil: none). libcontainer forks and waits for
	// helpers and hooks in Start, Exec and Destroy: those hold it off.
	reaper *reaper.Reaper
}

// Create converts the spec and creates the container (its cgroup and state directory). No
// process runs yet.
func Create(o Options) (*Container, error) {
	spec := o.Spec
	if spec == nil {
		return nil, fmt.Errorf("%w: oci_spec is empty", errdefs.ErrInvalidArgument)
	}
	if spec.Root == nil || spec.Root.Path == "" {
		return nil, fmt.Errorf("%w: oci_spec: root.path is missing", errdefs.ErrInvalidArgument)
	}
	if !filepath.IsAbs(spec.Root.Path) {
		return nil, fmt.Errorf("%w: oci_spec: root.path %q must be an absolute guest path", errdefs.ErrInvalidArgument, spec.Root.Path)
	}
	if spec.Process == nil {
		return nil, fmt.Errorf("%w: oci_spec: process is missing", errdefs.ErrInvalidArgument)
	}
	if spec.Linux != nil && spec.Linux.Seccomp != nil && !seccompBuilt {
		return nil, fmt.Errorf("%w: oci_spec asks for linux.seccomp but this agent was built without seccomp support", errdefs.ErrNotImplemented)
	}
	// Work on a copy of the parts we change.
	s := *spec
	lin := specs.Linux{}
	if spec.Linux != nil {
		lin = *spec.Linux
	}
	lin.CgroupsPath = o.CgroupPath
	if len(o.NSPaths) > 0 {
		ns := make([]specs.LinuxNamespace, len(lin.Namespaces))
		copy(ns, lin.Namespaces)
		for i := range ns {
			if p, ok := o.NSPaths[ns[i].Type]; ok {
				ns[i].Path = p
			}
		}
		lin.Namespaces = ns
	}
	// A FIFO's major and minor numbers mean nothing (mknod ignores them); libcontainer
	// checks the node it made against them, so they are cleared as runc's users expect.
	if slices.ContainsFunc(lin.Devices, func(d specs.LinuxDevice) bool { return d.Type == "p" }) {
		devs := slices.Clone(lin.Devices)
		for i := range devs {
			if devs[i].Type == "p" {
				devs[i].Major, devs[i].Minor = 0, 0
			}
		}
		lin.Devices = devs
	}
	if o.NetNSPath != "" {
		ns := make([]specs.LinuxNamespace, 0, len(lin.Namespaces)+1)
		for _, n := range lin.Namespaces {
			if n.Type != specs.NetworkNamespace {
				ns = append(ns, n)
			}
		}
		lin.Namespaces = append(ns, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: o.NetNSPath})
	}
	s.Linux = &lin
	s.Mounts = sysfsForUserNS(s.Mounts, lin.Namespaces)

	cfg, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{
		CgroupName: o.ID,
		Spec:       &s,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: convert oci_spec: %w", errdefs.ErrInvalidArgument, err)
	}
	if err := os.MkdirAll(o.StateRoot, 0o700); err != nil {
		return nil, fmt.Errorf("state root %s: %w", o.StateRoot, err)
	}
	c, err := libcontainer.Create(o.StateRoot, o.ID, cfg)
	if err != nil {
		if errors.Is(err, libcontainer.ErrExist) {
			return nil, fmt.Errorf("container %q: %w", o.ID, errdefs.ErrAlreadyExists)
		}
		return nil, fmt.Errorf("create container %q: %w", o.ID, err)
	}
	return &Container{c: c, reaper: o.Reaper}, nil
}

// sysfsForUserNS replaces sysfs mounts by a recursive bind of the guest's /sys (keeping
// their flags) when the container has a user namespace but no network namespace of its own:
// the kernel lets only the owner of the network namespace mount sysfs, so the mount would
// fail with EPERM. podman writes the same bind for such containers.
func sysfsForUserNS(mounts []specs.Mount, ns []specs.LinuxNamespace) []specs.Mount {
	userns, netns := false, false
	for _, n := range ns {
		switch n.Type {
		case specs.UserNamespace:
			userns = true
		case specs.NetworkNamespace:
			netns = n.Path == ""
		}
	}
	if !userns || netns || !slices.ContainsFunc(mounts, func(m specs.Mount) bool { return m.Type == "sysfs" }) {
		return mounts
	}
	out := slices.Clone(mounts)
	for i, m := range out {
		if m.Type != "sysfs" {
			continue
		}
		opts := []string{"rbind"}
		for _, o := range m.Options {
			if o != "bind" && o != "rbind" {
				opts = append(opts, o)
			}
		}
		out[i] = specs.Mount{Destination: m.Destination, Type: "bind", Source: "/sys", Options: opts}
	}
	return out
}

// StartOptions change how Start starts a process.
type StartOptions struct {
	// Record runs the process's "runc init" and nsexec with debug logging and returns
	// what libcontainer logged during the start (also when it fails). Other starts wait
	// for a recording start to end, so the entries are about this process.
	Record bool
}

// Start starts p in the container. For the init process (created with init=true) the
// process stops at libcontainer's exec barrier until Exec is called. It returns the log
// of the start when o.Record is set.
//
// The container must not be paused: libcontainer forks an exec'd process straight into
// the container's cgroup (clone3 with CLONE_INTO_CGROUP, under vfork), and a child frozen
// at birth would keep the forking thread, and with it the Go runtime's stop-the-world, from
// returning until the container is resumed.
//
// The process is the agent's child: the orphan reaper leaves it to Process.Wait.
func (c *Container) Start(p *Process, o StartOptions) (entries []LogEntry, _ error) {
	if o.Record {
		stop := recordStart(p)
		defer func() { entries = stop() }()
	} else {
		defer holdStart()()
	}
	release := c.reaper.Hold()
	defer release()
	if err := c.c.Start(p.p); err != nil {
		return nil, fmt.Errorf("start process in %q: %w", c.c.ID(), err)
	}
	p.disown = c.reaper.Own(p.Pid())
	return nil, nil
}

// Exec releases the init process from the exec barrier: it runs the user's program.
func (c *Container) Exec() error {
	release := c.reaper.Hold()
	defer release()
	if err := c.c.Exec(); err != nil {
		return fmt.Errorf("start container %q: %w", c.c.ID(), err)
	}
	return nil
}

// Signal signals the container's init. SIGKILL to a container without its own pid namespace
// kills every process of it (libcontainer semantics).
func (c *Container) Signal(sig unix.Signal) error {
	if err := c.c.Signal(sig); err != nil {
		if errors.Is(err, libcontainer.ErrNotRunning) {
			return fmt.Errorf("container %q: %w: not running", c.c.ID(), errdefs.ErrNotFound)
		}
		return fmt.Errorf("signal container %q: %w", c.c.ID(), err)
	}
	return nil
}

// SignalAll sends sig to every process in the container's cgroup. SIGKILL uses cgroup.kill,
// which also reaches processes forked meanwhile.
func (c *Container) SignalAll(sig unix.Signal) error {
	dir := c.CgroupDir()
	if sig == unix.SIGKILL && dir != "" {
		err := os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0)
		if err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
	}
	pids, err := c.Processes()
	if err != nil {
		return err
	}
	var errs []error
	for _, pid := range pids {
		if err := unix.Kill(pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("kill %d: %w", pid, err))
		}
	}
	return errors.Join(errs...)
}

// Processes returns the pids (in the agent's pid namespace) of the container's cgroup.
func (c *Container) Processes() ([]int, error) {
	pids, err := c.c.Processes()
	if err != nil {
		return nil, fmt.Errorf("processes of %q: %w", c.c.ID(), err)
	}
	return pids, nil
}

// Pause freezes the container.
func (c *Container) Pause() error {
	if err := c.c.Pause(); err != nil {
		if errors.Is(err, libcontainer.ErrNotRunning) {
			return fmt.Errorf("pause %q: %w: container is not running", c.c.ID(), errdefs.ErrFailedPrecondition)
		}
		return fmt.Errorf("pause %q: %w", c.c.ID(), err)
	}
	return nil
}

// Resume thaws the container.
func (c *Container) Resume() error {
	if err := c.c.Resume(); err != nil {
		if errors.Is(err, libcontainer.ErrNotPaused) {
			return fmt.Errorf("resume %q: %w: container is not paused", c.c.ID(), errdefs.ErrFailedPrecondition)
		}
		return fmt.Errorf("resume %q: %w", c.c.ID(), err)
	}
	return nil
}

// Status is libcontainer's view: "created", "running", "paused" or "stopped".
func (c *Container) Status() string {
	st, err := c.c.Status()
	if err != nil {
		return "unknown"
	}
	return st.String()
}

// CgroupDir is the container's cgroup v2 directory, empty if unknown.
func (c *Container) CgroupDir() string {
	st, err := c.c.State()
	if err != nil {
		return ""
	}
	return st.CgroupPaths[""]
}

// InitPid is the pid of the container's init, 0 if it has none.
func (c *Container) InitPid() int {
	st, err := c.c.State()
	if err != nil {
		return 0
	}
	return st.InitProcessPid
}

// Destroy removes the container's cgroup and state. Its processes must be gone.
func (c *Container) Destroy() error {
	release := c.reaper.Hold() // poststop hooks
	defer release()
	if err := c.c.Destroy(); err != nil {
		return fmt.Errorf("destroy container %q: %w", c.c.ID(), err)
	}
	return nil
}

// ID is the container id.
func (c *Container) ID() string { return c.c.ID() }

// rlimits maps OCI rlimit names to their numbers.
var rlimits = map[string]int{
	"RLIMIT_CPU":        unix.RLIMIT_CPU,
	"RLIMIT_FSIZE":      unix.RLIMIT_FSIZE,
	"RLIMIT_DATA":       unix.RLIMIT_DATA,
	"RLIMIT_STACK":      unix.RLIMIT_STACK,
	"RLIMIT_CORE":       unix.RLIMIT_CORE,
	"RLIMIT_RSS":        unix.RLIMIT_RSS,
	"RLIMIT_NPROC":      unix.RLIMIT_NPROC,
	"RLIMIT_NOFILE":     unix.RLIMIT_NOFILE,
	"RLIMIT_MEMLOCK":    unix.RLIMIT_MEMLOCK,
	"RLIMIT_AS":         unix.RLIMIT_AS,
	"RLIMIT_LOCKS":      unix.RLIMIT_LOCKS,
	"RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_MSGQUEUE":   unix.RLIMIT_MSGQUEUE,
	"RLIMIT_NICE":       unix.RLIMIT_NICE,
	"RLIMIT_RTPRIO":     unix.RLIMIT_RTPRIO,
	"RLIMIT_RTTIME":     unix.RLIMIT_RTTIME,
}

// NSPath is the path of process pid's namespace of type t.
func NSPath(pid int, t specs.LinuxNamespaceType) string {
	name := string(t)
	switch t {
	case specs.NetworkNamespace:
		name = "net"
	case specs.MountNamespace:
		name = "mnt"
	}
	return "/proc/" + strconv.Itoa(pid) + "/ns/" + name
}

func rlimitNumber(name string) (int, error) {
	n, ok := rlimits[strings.ToUpper(name)]
	if !ok {
		return 0, fmt.Errorf("%w: unknown rlimit type %q", errdefs.ErrInvalidArgument, name)
	}
	return n, nil
}
