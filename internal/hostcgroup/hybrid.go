package hostcgroup

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// hybridRoot is where a hybrid host mounts its cgroup v2 hierarchy, beside the v1 ones.
// It holds no controllers there, but runc places its containers in it too, at the same
// path as in the v1 hierarchies, and so does a sandbox's cgroupfs cgroup.
const hybridRoot = "/sys/fs/cgroup/unified"

// hybridUnified tells whether this (v1 or hybrid) host has the hybrid v2 hierarchy.
func hybridUnified() bool {
	var st unix.Statfs_t
	return unix.Statfs(hybridRoot, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
}

// createHybrid makes cgroup path p in the hybrid v2 hierarchy unless it exists, recording
// first that it does.
func (g *Group) createHybrid() error {
	dir := filepath.Join(hybridRoot, g.st.Target.Path)
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	g.st.HybridCreated = true
	if err := g.save(); err != nil {
		return err
	}
	return os.MkdirAll(dir, 0o755)
}

// addHybrid puts pid into cgroup path p of the hybrid v2 hierarchy.
func addHybrid(p string, pid int) error {
	return os.WriteFile(filepath.Join(hybridRoot, p, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0)
}

// deleteHybrid removes cgroup path p of the hybrid v2 hierarchy; one that is gone is not
// an error.
func deleteHybrid(p string) error {
	if err := os.Remove(filepath.Join(hybridRoot, p)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// ownHybrid reads the calling process's cgroup in the hybrid v2 hierarchy.
func ownHybrid() (string, error) {
	lines, err := readCgroupFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	for _, l := range lines {
		if l.controllers == "" {
			return l.path, nil
		}
	}
	return "", fmt.Errorf("read own cgroups: no cgroup v2 line in /proc/self/cgroup")
}

// Dirs returns the directories of the cgroups the sandbox whose directory is dir placed its
// VM in, one per hierarchy (the v1 controllers' and the v2 one, such as
// /sys/fs/cgroup/memory/pod1 and /sys/fs/cgroup/unified/pod1): the processes that stand
// for the sandbox's on the host join them too. None without a host cgroup (no record in
// dir).
func Dirs(dir string) ([]string, error) {
	st, err := readState(dir)
	if err != nil || st == nil {
		return nil, err
	}
	return st.Dirs, nil
}

// placed lists the directories of the cgroups the calling process is in that are t's: one
// per hierarchy it joined, in the mounted cgroup file systems.
func placed(t Target) ([]string, error) {
	return ownDirs(func(p string) bool {
		if t.Driver == DriverSystemd {
			return filepath.Base(p) == t.Unit
		}
		return p == t.Path
	})
}

// Own returns the directories of the calling process's cgroups, one per mounted
// hierarchy: where Place puts a process back.
func Own() ([]string, error) {
	return ownDirs(func(string) bool { return true })
}

// Place moves process pid, with all its threads, into the cgroups whose directories dirs
// lists (Dirs, Own). On error it may be in some of them.
func Place(pid int, dirs []string) error {
	for _, dir := range dirs {
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
			return fmt.Errorf("move pid %d into cgroup %s: %w", pid, dir, err)
		}
	}
	return nil
}

// ownDirs lists the directories of the calling process's cgroups whose path keep takes,
// in the mounted cgroup file systems.
func ownDirs(keep func(path string) bool) ([]string, error) {
	lines, err := readCgroupFile("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	mounts, err := cgroupMounts()
	if err != nil {
		return nil, err
	}
	var dirs []string
	for _, l := range lines {
		if !keep(l.path) {
			continue
		}
		for _, m := range mounts {
			if m.holds(l.controllers) {
				dirs = append(dirs, filepath.Join(m.dir, l.path))
				break
			}
		}
	}
	return dirs, nil
}

// cgroupLine is one line of /proc/PID/cgroup.
type cgroupLine struct {
	// controllers is the hierarchy's controller list ("cpu,cpuacct", "name=systemd"), empty
	// for the v2 hierarchy.
	controllers string
	path        string
}

func readCgroupFile(file string) ([]cgroupLine, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read cgroups: %w", err)
	}
	var out []cgroupLine
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			return nil, fmt.Errorf("read cgroups: %s: malformed line %q", file, line)
		}
		out = append(out, cgroupLine{controllers: parts[1], path: parts[2]})
	}
	return out, nil
}

// cgroupMount is a cgroup file system mounted at its hierarchy's root.
type cgroupMount struct {
	dir string
	v2  bool
	// options are a v1 mount's super options: its controllers and name=.
	options []string
}

// holds tells whether the mount is the hierarchy of a /proc/PID/cgroup controller list.
func (m cgroupMount) holds(controllers string) bool {
	if controllers == "" {
		return m.v2
	}
	if m.v2 {
		return false
	}
	for _, c := range strings.Split(controllers, ",") {
		if !slices.Contains(m.options, c) {
			return false
		}
	}
	return true
}

// cgroupMounts lists the cgroup file systems in /proc/self/mountinfo that are mounted at
// their hierarchy's root.
func cgroupMounts() ([]cgroupMount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("list cgroup mounts: %w", err)
	}
	defer f.Close()
	var out []cgroupMount
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for s.Scan() {
		// id parent dev root mountpoint options [optional...] - fstype source superoptions
		pre, post, ok := strings.Cut(s.Text(), " - ")
		if !ok {
			continue
		}
		fields, tail := strings.Fields(pre), strings.Fields(post)
		if len(fields) < 5 || len(tail) < 3 || fields[3] != "/" {
			continue
		}
		switch tail[0] {
		case "cgroup2":
			out = append(out, cgroupMount{dir: fields[4], v2: true})
		case "cgroup":
			out = append(out, cgroupMount{dir: fields[4], options: strings.Split(tail[2], ",")})
		}
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("list cgroup mounts: %w", err)
	}
	return out, nil
}
