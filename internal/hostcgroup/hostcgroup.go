// Package hostcgroup charges a sandbox's host processes to the pod's cgroup: the cgroup the
// sandbox spec names in linux.cgroupsPath, with the cgroupfs driver (a path) or the systemd
// driver ("slice:prefix:name"), on cgroup v1 (legacy or hybrid) and v2.
//
// The process that owns the sandbox (the shim) joins the pod's cgroup before the VMM and
// its helpers start, so they are born in it and every page the guest touches is charged
// there: a limit the manager puts on the pod's cgroup or its parents bounds the whole VM.
// Without SandboxOnly the owner goes back to the cgroup it came from (where the manager
// started it) once the VMM runs, so only the VM and its helpers count against the pod.
//
// On a hybrid host a cgroupfs cgroup is also made in the v2 hierarchy beside the v1 ones
// (it has no controllers there), as runc places its containers. Dirs hands out the
// cgroups' directories, for the host processes that stand for the container processes in
// the VM (internal/taskpid).
//
// Container limits are not written to the host cgroup: the guest enforces them on the
// container's processes, and the VM needs its own memory on top of them.
//
// Join records what it does in the sandbox directory (StateName) before each step, so
// Remove undoes exactly that after a normal end, a failed create or the owner's crash.
package hostcgroup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/vessel-containers/vessel/internal/atomicfile"
)

// StateName is the file in the sandbox directory that records the host cgroup.
const StateName = "cgroup.json"

// mountpoint is where the cgroup file systems are mounted.
const mountpoint = "/sys/fs/cgroup"

// Config says where a sandbox's host processes go.
type Config struct {
	// Path is the sandbox spec's linux.cgroupsPath: a cgroupfs path such as
	// "/kubepods/besteffort/pod1/abc", or systemd's "slice:prefix:name". Empty places
	// nothing.
	Path string
	// SandboxOnly keeps the owner in the pod's cgroup too; otherwise it returns to its own
	// cgroup once the VMM runs (Group.Settle).
	SandboxOnly bool
}

// Driver is how the pod's cgroup is made.
type Driver string

const (
	DriverCgroupfs Driver = "cgroupfs"
	DriverSystemd  Driver = "systemd"
)

// Target is a parsed cgroupsPath.
type Target struct {
	Driver Driver
	// Path is the cgroupfs path, absolute and clean (DriverCgroupfs).
	Path string
	// Slice and Unit are systemd's slice and the scope unit made in it (DriverSystemd).
	Slice, Unit string
}

// Parse reads a linux.cgroupsPath. With systemd (the host runs systemd: SystemdRunning),
// "slice:prefix:name" with no slash is a systemd scope ("prefix-name.scope" in slice,
// "system.slice" when empty), as with runc's systemd driver. Anything else, and that form
// on a host without systemd, is a cgroupfs path below the cgroup root, as runc's cgroupfs
// driver takes it (containerd's CRI writes the systemd form for a pod parent ending in
// ".slice" whatever the driver).
func Parse(p string, systemd bool) (Target, error) {
	if p == "" {
		return Target{}, fmt.Errorf("cgroupsPath is empty: %w", errdefs.ErrInvalidArgument)
	}
	if parts := strings.Split(p, ":"); systemd && len(parts) == 3 && !strings.Contains(p, "/") {
		slice, prefix, name := parts[0], parts[1], parts[2]
		if name == "" {
			return Target{}, fmt.Errorf("cgroupsPath %q: systemd form slice:prefix:name with an empty name: %w", p, errdefs.ErrInvalidArgument)
		}
		if slice == "" {
			slice = "system.slice"
		}
		if !strings.HasSuffix(slice, ".slice") {
			return Target{}, fmt.Errorf("cgroupsPath %q: slice %q does not end in .slice: %w", p, slice, errdefs.ErrInvalidArgument)
		}
		unit := name
		if !strings.HasSuffix(name, ".slice") && !strings.HasSuffix(name, ".scope") {
			unit = name + ".scope"
			if prefix != "" {
				unit = prefix + "-" + unit
			}
		}
		if !strings.HasSuffix(unit, ".scope") {
			return Target{}, fmt.Errorf("cgroupsPath %q: a sandbox's host processes go into a scope, not the slice %q: %w", p, unit, errdefs.ErrInvalidArgument)
		}
		return Target{Driver: DriverSystemd, Slice: slice, Unit: unit}, nil
	}
	clean := path.Clean("/" + p)
	if clean == "/" {
		return Target{}, fmt.Errorf("cgroupsPath %q names the root cgroup: %w", p, errdefs.ErrInvalidArgument)
	}
	return Target{Driver: DriverCgroupfs, Path: clean}, nil
}

// State is what Join recorded, in the sandbox directory.
type State struct {
	Target Target `json:"target"`
	// Unified is set when the host has cgroup v2 only.
	Unified bool `json:"unified"`
	// Created is set before Join creates the pod's cgroupfs cgroup: Remove deletes it.
	// A cgroup that existed before is left in place.
	Created bool `json:"created"`
	// Origin is the owner's cgroup before it joined: per v1 hierarchy ("cpu",
	// "name=systemd", ...), or under "" on v2. The owner returns there.
	Origin map[string]string `json:"origin"`
	// Hybrid is set when the cgroupfs cgroup is also made in a hybrid host's v2 hierarchy
	// (hybridRoot), as runc makes its containers' there; HybridOrigin is the owner's cgroup
	// in it before it joined, and HybridCreated is set before Join creates the cgroup there.
	Hybrid        bool   `json:"hybrid,omitempty"`
	HybridOrigin  string `json:"hybridOrigin,omitempty"`
	HybridCreated bool   `json:"hybridCreated,omitempty"`
	// Dirs are the directories of the cgroups the owner joined, one per hierarchy: where
	// the VMM is born (Dirs).
	Dirs []string `json:"dirs,omitempty"`
}

// Group is the pod's cgroup with the sandbox's owner in it.
type Group struct {
	dir     string
	cfg     Config
	st      State
	systemd *systemdConn // DriverSystemd only
}

// Join puts the calling process, the sandbox's owner, into the pod's cgroup named by
// cfg.Path, creating it if needed; dir is the sandbox directory, where the state goes.
// A nil Group and no error mean cfg.Path is empty. On error nothing is left in place.
func Join(ctx context.Context, dir, id string, cfg Config) (_ *Group, retErr error) {
	if cfg.Path == "" {
		return nil, nil
	}
	t, err := Parse(cfg.Path, SystemdRunning())
	if err != nil {
		return nil, err
	}
	origin, err := ownCgroups()
	if err != nil {
		return nil, err
	}
	g := &Group{dir: dir, cfg: cfg, st: State{Target: t, Unified: cgroups.Mode() == cgroups.Unified, Origin: origin}}
	if t.Driver == DriverCgroupfs && !g.st.Unified && hybridUnified() {
		g.st.Hybrid = true
		if g.st.HybridOrigin, err = ownHybrid(); err != nil {
			return nil, err
		}
	}
	if err := g.save(); err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			if err := Remove(ctx, dir); err != nil {
				log.G(ctx).WithError(err).Warn("remove the host cgroup after a failed join")
			}
		}
	}()
	self := os.Getpid()
	switch t.Driver {
	case DriverSystemd:
		if g.systemd, err = dialSystemd(ctx); err != nil {
			return nil, fmt.Errorf("host cgroup %s: %w", cfg.Path, err)
		}
		if err := g.systemd.startScope(ctx, t, id, self); err != nil {
			g.systemd.close()
			return nil, fmt.Errorf("host cgroup %s: %w", cfg.Path, err)
		}
	default:
		if err := g.create(); err != nil {
			return nil, fmt.Errorf("host cgroup %s: %w", cfg.Path, err)
		}
		if err := g.Add(self); err != nil {
			return nil, err
		}
	}
	if g.st.Dirs, err = placed(t); err == nil {
		err = g.save()
	}
	if err != nil {
		g.Close()
		return nil, fmt.Errorf("host cgroup %s: %w", cfg.Path, err)
	}
	return g, nil
}

// create makes the cgroupfs cgroup unless it exists.
func (g *Group) create() error {
	p := g.st.Target.Path
	if g.st.Unified {
		if _, err := os.Stat(filepath.Join(mountpoint, p)); err == nil {
			return nil
		}
		g.st.Created = true
		if err := g.save(); err != nil {
			return err
		}
		_, err := cgroup2.NewManager(mountpoint, p, &cgroup2.Resources{})
		return err
	}
	if _, err := cgroup1.Load(cgroup1.StaticPath(p), cgroup1.WithHierarchy(mountedV1)); err == nil {
		if g.st.Hybrid {
			return g.createHybrid()
		}
		return nil
	} else if !errors.Is(err, cgroup1.ErrCgroupDeleted) {
		return err
	}
	g.st.Created = true
	if err := g.save(); err != nil {
		return err
	}
	if _, err := cgroup1.New(cgroup1.StaticPath(p), &specs.LinuxResources{}, cgroup1.WithHierarchy(mountedV1)); err != nil {
		return err
	}
	if g.st.Hybrid {
		return g.createHybrid() // hybrid.go
	}
	return nil
}

// Add puts process pid, with all its threads, into the pod's cgroup: a VMM that was not
// born there (a VM from the factory's cache) or a helper started elsewhere.
func (g *Group) Add(pid int) error {
	if g == nil {
		return nil
	}
	var err error
	switch {
	case g.st.Target.Driver == DriverSystemd:
		err = g.systemd.attach(g.st.Target.Unit, pid)
	case g.st.Unified:
		var m *cgroup2.Manager
		if m, err = cgroup2.Load(g.st.Target.Path, cgroup2.WithMountpoint(mountpoint)); err == nil {
			err = m.AddProc(uint64(pid))
		}
	default:
		var c cgroup1.Cgroup
		if c, err = cgroup1.Load(cgroup1.StaticPath(g.st.Target.Path), cgroup1.WithHierarchy(mountedV1)); err == nil {
			err = c.Add(cgroup1.Process{Pid: pid})
		}
		if err == nil && g.st.Hybrid {
			err = addHybrid(g.st.Target.Path, pid)
		}
	}
	if err != nil {
		return fmt.Errorf("move pid %d into host cgroup %s: %w", pid, g.cfg.Path, err)
	}
	return nil
}

// Settle is called once the VMM runs: without SandboxOnly the owner returns to the cgroup
// it came from, leaving the VM and its helpers in the pod's.
func (g *Group) Settle(ctx context.Context) error {
	if g == nil || g.cfg.SandboxOnly {
		return nil
	}
	if err := returnTo(g.st, os.Getpid()); err != nil {
		return fmt.Errorf("host cgroup %s: return the sandbox owner to its own cgroup: %w", g.cfg.Path, err)
	}
	log.G(ctx).WithField("cgroup", g.cfg.Path).Debug("sandbox owner returned to its cgroup; the VM stays in the pod's")
	return nil
}

// Path is the cgroupsPath the group was made from.
func (g *Group) Path() string { return g.cfg.Path }

// Close releases the group's connection to systemd; the cgroup stays.
func (g *Group) Close() {
	if g != nil && g.systemd != nil {
		g.systemd.close()
	}
}

func (g *Group) save() error {
	data, err := json.Marshal(&g.st)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(g.dir, StateName), data, 0o600); err != nil {
		return fmt.Errorf("record host cgroup: %w", err)
	}
	return nil
}

// Remove undoes what Join recorded in the sandbox directory dir: the calling process
// returns to its own cgroup if it is in the pod's, and a cgroupfs cgroup Join created is
// deleted (a systemd scope ends by itself once empty). The VMM and its helpers must have
// exited. No record is not an error.
func Remove(ctx context.Context, dir string) error {
	st, err := readState(dir)
	if err != nil || st == nil {
		return err
	}
	if err := leave(*st); err != nil {
		return fmt.Errorf("host cgroup: %w", err)
	}
	if (st.Created || st.HybridCreated) && st.Target.Driver == DriverCgroupfs {
		if err := deleteCgroup(*st); err != nil {
			return fmt.Errorf("host cgroup %s: %w", st.Target.Path, err)
		}
		log.G(ctx).WithField("cgroup", st.Target.Path).Debug("host cgroup removed")
	}
	if err := os.Remove(filepath.Join(dir, StateName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("host cgroup: %w", err)
	}
	return nil
}

// readState reads what Join recorded in the sandbox directory dir; nil when nothing is.
func readState(dir string) (*State, error) {
	file := filepath.Join(dir, StateName)
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("host cgroup: %w", err)
	}
	var st State
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("host cgroup record %s: corrupt: %w", file, err)
	}
	return &st, nil
}

// leave moves the calling process back to st.Origin when it is in the pod's cgroup.
func leave(st State) error {
	own, err := ownCgroups()
	if err != nil {
		return err
	}
	inside := false
	for _, p := range own {
		if st.Target.Driver == DriverSystemd {
			inside = inside || path.Base(p) == st.Target.Unit
		} else {
			inside = inside || p == st.Target.Path
		}
	}
	if !inside {
		return nil
	}
	return returnTo(st, os.Getpid())
}

// deleteCgroup removes a cgroupfs cgroup that has no processes left.
func deleteCgroup(st State) error {
	if st.Unified {
		m, err := cgroup2.Load(st.Target.Path, cgroup2.WithMountpoint(mountpoint))
		if err != nil {
			return err
		}
		if procs, err := m.Procs(true); err == nil && len(procs) > 0 {
			return fmt.Errorf("processes %v are still in it: %w", procs, errdefs.ErrFailedPrecondition)
		}
		if err := m.Delete(); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	if st.Created {
		if err := deleteV1(st.Target.Path); err != nil {
			return err
		}
	}
	if st.HybridCreated {
		return deleteHybrid(st.Target.Path) // hybrid.go
	}
	return nil
}

// deleteV1 removes cgroupfs cgroup path p from the v1 hierarchies.
func deleteV1(p string) error {
	c, err := cgroup1.Load(cgroup1.StaticPath(p), cgroup1.WithHierarchy(mountedV1))
	if errors.Is(err, cgroup1.ErrCgroupDeleted) {
		return nil
	}
	if err != nil {
		return err
	}
	if procs, err := c.Processes(cgroup1.Memory, true); err == nil && len(procs) > 0 {
		pids := make([]int, 0, len(procs))
		for _, p := range procs {
			pids = append(pids, p.Pid)
		}
		return fmt.Errorf("processes %v are still in it: %w", pids, errdefs.ErrFailedPrecondition)
	}
	return c.Delete()
}

// ownCgroups reads the calling process's cgroups: per v1 hierarchy, or "" on v2.
func ownCgroups() (map[string]string, error) {
	if cgroups.Mode() == cgroups.Unified {
		p, err := cgroup2.PidGroupPath(os.Getpid())
		if err != nil {
			return nil, fmt.Errorf("read own cgroup: %w", err)
		}
		return map[string]string{"": p}, nil
	}
	m, err := cgroup1.ParseCgroupFile("/proc/self/cgroup")
	if err != nil {
		return nil, fmt.Errorf("read own cgroups: %w", err)
	}
	// The v2 hierarchy of a hybrid host holds no controllers; the owner is left there.
	delete(m, "")
	return m, nil
}

// returnTo moves pid back into the owner's cgroups before Join: st.Origin (ownCgroups's
// form) and, on a hybrid host, st.HybridOrigin.
func returnTo(st State, pid int) error {
	origin := st.Origin
	if p, ok := origin[""]; ok {
		m, err := cgroup2.Load(p, cgroup2.WithMountpoint(mountpoint))
		if err != nil {
			return err
		}
		return m.AddProc(uint64(pid))
	}
	c, err := cgroup1.Load(func(name cgroup1.Name) (string, error) {
		if p, ok := origin[string(name)]; ok {
			return p, nil
		}
		if p, ok := origin["name="+string(name)]; ok {
			return p, nil
		}
		return "", cgroup1.ErrControllerNotActive
	}, cgroup1.WithHierarchy(mountedV1))
	if err != nil {
		return err
	}
	if err := c.Add(cgroup1.Process{Pid: pid}); err != nil {
		return err
	}
	if st.Hybrid {
		return addHybrid(st.HybridOrigin, pid) // hybrid.go
	}
	return nil
}

// mountedV1 is the host's v1 hierarchies: those of cgroup1.Default (a directory per
// controller under the cgroup mount point) that are cgroup file systems. A directory that is
// no mount (one a tool made on the tmpfs for a controller the host does not mount) would
// otherwise pass for a hierarchy, and writing a pid into its plain cgroup.procs file would
// look like joining it.
func mountedV1() ([]cgroup1.Subsystem, error) {
	all, err := cgroup1.Default()
	if err != nil {
		return nil, err
	}
	var out []cgroup1.Subsystem
	for _, s := range all {
		p, ok := s.(interface{ Path(string) string })
		if !ok {
			continue
		}
		var st unix.Statfs_t
		if err := unix.Statfs(p.Path("/"), &st); err == nil && st.Type == unix.CGROUP_SUPER_MAGIC {
			out = append(out, s)
		}
	}
	return out, nil
}

// Procs counts the processes in the cgroupfs cgroup at path p (a Target's Path) and its
// descendants, as runc counts them before it starts a container there: in the devices
// hierarchy on cgroup v1 (legacy or hybrid), in the unified one on v2. A cgroup that does
// not exist holds none. root is the cgroup mount point, normally /sys/fs/cgroup.
func Procs(root, p string) (int, error) {
	dir := filepath.Join(root, "devices", p)
	if _, err := os.Stat(filepath.Join(root, "devices")); err != nil {
		dir = filepath.Join(root, p) // no v1 devices hierarchy: cgroup v2
	}
	n := 0
	err := filepath.WalkDir(dir, func(q string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // not there, or removed while walked
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(filepath.Join(q, "cgroup.procs"))
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		n += len(strings.Fields(string(b)))
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("count the processes of cgroup %s: %w", p, err)
	}
	return n, nil
}

// Move puts process pid, with all its threads, into the existing cgroupfs cgroup p: on v2
// the cgroup of that path, on v1 the cgroup of that path in every mounted hierarchy, as
// containerd's runc shim joins the cgroup its create options name (ShimCgroup).
func Move(pid int, p string) error {
	var err error
	if cgroups.Mode() == cgroups.Unified {
		var m *cgroup2.Manager
		if m, err = cgroup2.Load(p, cgroup2.WithMountpoint(mountpoint)); err == nil {
			err = m.AddProc(uint64(pid))
		}
	} else {
		var c cgroup1.Cgroup
		if c, err = cgroup1.Load(cgroup1.StaticPath(p), cgroup1.WithHierarchy(mountedV1)); err == nil {
			err = c.Add(cgroup1.Process{Pid: pid})
		}
	}
	if err != nil {
		return fmt.Errorf("move pid %d into cgroup %s: %w", pid, p, err)
	}
	return nil
}
