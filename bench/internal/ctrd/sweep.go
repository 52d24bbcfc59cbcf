package ctrd

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cgroupRoot is where the host's cgroup hierarchies are mounted.
const cgroupRoot = "/sys/fs/cgroup"

// shimSocketDir is where containerd's shims put their sockets (containerd's state dir "s").
const shimSocketDir = "/run/containerd/s"

// sweep kills what an interrupted run may have left: every process whose command line
// names dir (shims started with -address dir/c.sock, QEMU with its state under dir), and
// every process in the namespace's cgroups (runc containers, whose cgroup path is
// /<namespace>/<id>); then it removes those cgroups. Only processes found this way are
// signalled, each by pid.
func sweep(dir, namespace string) error {
	self := os.Getpid()
	var pids []int
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return fmt.Errorf("list processes: %w", err)
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if bytes.Contains(cmdline, []byte(dir+"/")) {
			pids = append(pids, pid)
		}
	}
	cgroups := namespaceCgroups(namespace)
	for _, cg := range cgroups {
		pids = append(pids, cgroupProcs(cg)...)
	}
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	waitGone(pids, 10*time.Second)
	var errs []error
	// Children before parents.
	sort.Slice(cgroups, func(i, j int) bool { return len(cgroups[i]) > len(cgroups[j]) })
	for _, cg := range cgroups {
		if err := rmdirRetry(cg); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// namespaceCgroups lists /sys/fs/cgroup/<hierarchy>/<namespace> and its subdirectories in
// every hierarchy (cgroup v1 controllers, the named systemd hierarchy, the unified one).
func namespaceCgroups(namespace string) []string {
	var out []string
	hierarchies, _ := os.ReadDir(cgroupRoot)
	for _, h := range hierarchies {
		base := filepath.Join(cgroupRoot, h.Name(), namespace)
		if st, err := os.Lstat(base); err != nil || !st.IsDir() {
			continue
		}
		_ = filepath.WalkDir(base, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				out = append(out, p)
			}
			return nil
		})
	}
	return out
}

func cgroupProcs(cg string) []int {
	data, err := os.ReadFile(filepath.Join(cg, "cgroup.procs"))
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(string(data)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// rmdirRetry removes an empty cgroup; a cgroup whose last task just died may report EBUSY
// for a moment.
func rmdirRetry(dir string) error {
	var err error
	for range 50 {
		if err = syscall.Rmdir(dir); err == nil || errors.Is(err, syscall.ENOENT) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("remove cgroup %s: %w", dir, err)
}

// waitGone waits until none of pids exists (killed processes are reaped by their parents,
// or by init once the parent is gone).
func waitGone(pids []int, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for _, pid := range pids {
		for time.Now().Before(deadline) {
			if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// unmountBelow detaches every mount whose mount point is below dir, deepest first.
func unmountBelow(dir string) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("read mounts: %w", err)
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if strings.HasPrefix(mp, dir+"/") || mp == dir {
			points = append(points, mp)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read mounts: %w", err)
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	var errs []error
	for _, mp := range points {
		if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mp, err))
		}
	}
	return errors.Join(errs...)
}

// unescapeMount decodes the octal escapes (\040 for a space) of /proc/self/mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// removeShimSocket removes the socket a shim of container id made (named as containerd's
// shim package names it: sha256 of address/namespace/id), in case the shim was killed.
func removeShimSocket(address, namespace, id string) {
	sum := sha256.Sum256([]byte(filepath.Join(address, namespace, id)))
	_ = os.Remove(filepath.Join(shimSocketDir, fmt.Sprintf("%x", sum)))
}
