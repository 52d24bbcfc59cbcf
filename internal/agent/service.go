//go:build linux

package agent

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
	"github.com/vessel-containers/vessel/internal/agent/device"
	"github.com/vessel-containers/vessel/internal/agent/libct"
	"github.com/vessel-containers/vessel/internal/agent/netcfg"
	"github.com/vessel-containers/vessel/internal/agent/policy"
	"github.com/vessel-containers/vessel/internal/agent/reaper"
	"github.com/vessel-containers/vessel/internal/agent/storage"
	"github.com/vessel-containers/vessel/internal/containerid"
	"github.com/vessel-containers/vessel/internal/tracing"
	"github.com/vessel-containers/vessel/internal/version"
)

// GitCommit is set with -ldflags -X at build time.
var GitCommit = ""

// Config holds the paths the service works with; the defaults are the guest's.
type Config struct {
	// RunDir confines mount points and CopyFile paths: /run/vessel.
	RunDir string
	// CgroupRoot is the cgroup v2 mount: /sys/fs/cgroup.
	CgroupRoot string
	// CgroupParent is the parent of container cgroups, relative to CgroupRoot: /vessel.
	CgroupParent string
	// SysDir is sysfs: /sys.
	SysDir string
	// MemInfo is the kernel's memory figures: /proc/meminfo.
	MemInfo string
	// PodNetNS is where the pod's network namespace is pinned (package netcfg): every
	// container joins it and the host's NICs are moved into it. It is made on first use.
	PodNetNS string
	// Vsock reports whether the agent listens on vsock too (a capability).
	Vsock bool
	// StartedAt is the guest's boot clock (boot.SinceBoot) when the agent's main began; 0
	// when unknown. GetMetrics reports it so the host can tell kernel boot from agent start.
	StartedAt time.Duration
	// Reaper, when set (the agent runs as PID 1), reaps the orphans re-parented to the
	// agent; the agent tells it which of its children it waits for itself. Nil: nothing is
	// reaped but what the agent waits for.
	Reaper *reaper.Reaper
}

// DefaultConfig is the guest's configuration.
func DefaultConfig() Config {
	return Config{
		RunDir:       storage.DefaultRoot,
		CgroupRoot:   "/sys/fs/cgroup",
		CgroupParent: "/vessel",
		SysDir:       "/sys",
		MemInfo:      "/proc/meminfo",
		PodNetNS:     "/run/vessel-netns/pod",
	}
}

// Service implements agentv1.AgentService.
type Service struct {
	cfg      Config
	storage  *storage.Manager
	files    *fileWriter
	started  time.Time
	sessions func() uint64
	// findBlock finds a hot-plugged disk by PCI path (devices.go); tests replace it.
	findBlock findBlockFunc
	// readyAt is the guest's boot clock in nanoseconds when the agent began serving (0
	// until MarkReady).
	readyAt atomic.Int64

	// mu guards sandbox, containers, reserved, pidnsHolder and oomSeen.
	mu         sync.Mutex
	sandbox    *sandbox
	containers map[string]*container
	// reserved holds ids whose CreateContainer is in progress.
	reserved map[string]bool
	// pidnsHolder is the first container of the sandbox that got its own pid namespace;
	// containers asking for the sandbox pid namespace join it.
	pidnsHolder string
	// oomSeen is the OOM kill count last reported by GetOOMEvent, by container.
	oomSeen map[string]uint64

	// cgroups are the cgroups of containers with a linux.cgroupsPath (cgroup.go).
	cgroups *containerCgroups

	// debugMu guards debugProcs.
	debugMu sync.Mutex
	// debugProcs are the debug processes by exec id (debug.go).
	debugProcs map[string]*process

	// gate holds the agent policy in force (SetPolicy); the server checks requests with it.
	gate policy.Gate
	// spans records the spans of traced requests until the host collects them; nil when
	// the recorder could not be made (the agent then serves no Tracing service).
	spans *tracing.Recorder

	// netMu guards podNS.
	netMu sync.Mutex
	// podNS is the pod's network namespace once made (network.go).
	podNS *netcfg.PodNS

	// initLogs are the logs of process starts that asked for one (initlog.go).
	initLogs initLogs

	// fwdMu guards forwards.
	fwdMu sync.Mutex
	// forwards are the open port forwards by id (portforward.go); nil while one is dialing.
	forwards map[string]*forward
}

var _ agentv1.AgentService = (*Service)(nil)

// NewService returns a service with no sandbox.
func NewService(cfg Config) *Service {
	spans, err := tracing.NewRecorder("vessel-agent", 0)
	if err != nil {
		log.L.WithError(err).Warn("no span recorder: the agent records no spans")
	}
	return &Service{
		spans:    spans,
		cfg:      cfg,
		storage:  storage.NewManager(cfg.RunDir),
		files:    newFileWriter(cfg.RunDir),
		started:  time.Now(),
		sessions: func() uint64 { return 0 },
		findBlock: func(ctx context.Context, devType, addr string) (device.Block, error) {
			if devType == "scsi" {
				return device.WaitSCSI(ctx, cfg.SysDir, addr)
			}
			return device.WaitBlock(ctx, cfg.SysDir, addr)
		},
		cgroups:    newContainerCgroups(cfg.CgroupRoot, cfg.CgroupParent),
		containers: make(map[string]*container),
		reserved:   make(map[string]bool),
		oomSeen:    make(map[string]uint64),
	}
}

// MarkReady records the guest's boot clock (boot.SinceBoot) when the agent began serving.
func (s *Service) MarkReady(at time.Duration) { s.readyAt.Store(int64(at)) }

// SetSessionCounter lets metrics report transport sessions.
func (s *Service) SetSessionCounter(f func() uint64) { s.sessions = f }

// Check answers the host's handshake.
func (s *Service) Check(ctx context.Context, _ *agentv1.CheckRequest) (*agentv1.CheckResponse, error) {
	return &agentv1.CheckResponse{
		Serving:         true,
		AgentVersion:    version.Version,
		ProtocolVersion: agentv1.ProtocolVersion,
		Capabilities:    s.capabilities(),
	}, nil
}

// capabilities lists what this guest can do, from what the kernel reports.
func (s *Service) capabilities() []string {
	var caps []string
	fss, _ := os.ReadFile("/proc/filesystems")
	for _, fs := range []string{"9p", "virtiofs"} {
		if hasFilesystem(string(fss), fs) {
			caps = append(caps, fs)
		}
	}
	if _, err := os.Stat(filepath.Join(s.cfg.CgroupRoot, "cgroup.controllers")); err == nil {
		caps = append(caps, "cgroup2")
	}
	if libct.SeccompSupported() {
		caps = append(caps, "seccomp")
	}
	if s.cfg.Vsock {
		caps = append(caps, "vsock")
	}
	if s.spans != nil {
		caps = append(caps, agentv1.CapabilityTracing)
	}
	return caps
}

func hasFilesystem(procFilesystems, fs string) bool {
	for _, line := range strings.Split(procFilesystems, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && f[len(f)-1] == fs {
			return true
		}
	}
	return false
}

// Version reports versions and the guest kernel release.
func (s *Service) Version(ctx context.Context, _ *agentv1.VersionRequest) (*agentv1.VersionResponse, error) {
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return nil, fmt.Errorf("uname: %w", err)
	}
	return &agentv1.VersionResponse{
		AgentVersion:    version.Version,
		ProtocolVersion: agentv1.ProtocolVersion,
		KernelRelease:   unix.ByteSliceToString(uts.Release[:]),
		GitCommit:       GitCommit,
	}, nil
}

// SetGuestDateTime sets the guest clock.
func (s *Service) SetGuestDateTime(ctx context.Context, req *agentv1.SetGuestDateTimeRequest) (*agentv1.Empty, error) {
	if req.GetSec() <= 0 {
		return nil, fmt.Errorf("%w: sec must be a positive Unix time, got %d", errdefs.ErrInvalidArgument, req.GetSec())
	}
	if req.GetUsec() < 0 || req.GetUsec() >= 1_000_000 {
		return nil, fmt.Errorf("%w: usec must be in [0, 1000000), got %d", errdefs.ErrInvalidArgument, req.GetUsec())
	}
	before := time.Now()
	tv := unix.Timeval{Sec: req.GetSec(), Usec: req.GetUsec()}
	if err := unix.Settimeofday(&tv); err != nil {
		return nil, fmt.Errorf("settimeofday: %w", err)
	}
	log.G(ctx).WithField("skew", time.Unix(req.GetSec(), req.GetUsec()*1000).Sub(before)).Debug("guest clock set")
	return &agentv1.Empty{}, nil
}

// ReseedRandomDev mixes host entropy into the guest pool and credits it.
func (s *Service) ReseedRandomDev(ctx context.Context, req *agentv1.ReseedRandomDevRequest) (*agentv1.Empty, error) {
	data := req.GetData()
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: data is empty", errdefs.ErrInvalidArgument)
	}
	if len(data) > 1<<20 {
		return nil, fmt.Errorf("%w: data is %d bytes, at most 1 MiB", errdefs.ErrInvalidArgument, len(data))
	}
	f, err := os.OpenFile("/dev/random", os.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/random: %w", err)
	}
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		return nil, fmt.Errorf("write /dev/random: %w", err)
	}
	// struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
	info := make([]byte, 8+(len(data)+3)/4*4)
	binary.NativeEndian.PutUint32(info[0:4], uint32(len(data)*8)) // entropy bits credited
	binary.NativeEndian.PutUint32(info[4:8], uint32(len(data)))
	copy(info[8:], data)
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("credit entropy: %w", err)
	}
	var errno unix.Errno
	if err := rc.Control(func(fd uintptr) {
		// RNDADDENTROPY takes a pointer to struct rand_pool_info; info outlives the call.
		_, _, errno = unix.Syscall(unix.SYS_IOCTL, fd, unix.RNDADDENTROPY, uintptr(unsafe.Pointer(&info[0]))) //nolint:gosec // G103: the ioctl needs a raw pointer

	}); err != nil {
		return nil, fmt.Errorf("credit entropy: %w", err)
	}
	if errno != 0 {
		return nil, fmt.Errorf("credit entropy (RNDADDENTROPY): %w", errno)
	}
	// Crediting does not rekey a kernel RNG that is already initialized: it reseeds on its
	// own only every few seconds to a minute. A VM restored from a template shares its
	// RNG state with every other clone until then, so reseed now (RNDRESEEDCRNG).
	if err := rc.Control(func(fd uintptr) {
		_, _, errno = unix.Syscall(unix.SYS_IOCTL, fd, unix.RNDRESEEDCRNG, 0)
	}); err != nil {
		return nil, fmt.Errorf("reseed crng: %w", err)
	}
	if errno != 0 {
		return nil, fmt.Errorf("reseed crng (RNDRESEEDCRNG): %w", errno)
	}
	return &agentv1.Empty{}, nil
}

// validID checks an id from a request with the one id rule (containerid); field names the
// request field.
func validID(field, id string) error {
	if err := containerid.Validate(id); err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	return nil
}
