// Package jailtest checks, from /proc, that a running process is confined the way the
// jail entry confines a VMM: its status fields and its descriptors.
package jailtest

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/vessel-containers/vessel/internal/jail"
)

// Want is what a confined process must look like.
type Want struct {
	// Caps is exactly the effective, permitted and bounding set (the inheritable and
	// ambient sets are empty).
	Caps []jail.Cap
	// Seccomp is the Seccomp field: 2 for a filter, 0 for none.
	Seccomp int
	// Dirs are where every file and directory the process holds open lives (its logs,
	// shared directories, template files), besides the devices in Devices.
	Dirs []string
	// Devices are the device and /dev files it may hold (/dev/null, /dev/kvm, ...).
	Devices []string
	// SocketDir is where every unix socket it holds is bound (its listeners and the
	// connections accepted on them); a socket with another address or none is
	// unexpected.
	SocketDir string
	// ClientSockets is how many unbound unix sockets it may hold: its connections to
	// another daemon (QEMU's to virtiofsd: the vhost-user socket and its back channel).
	ClientSockets int
	// Memfd allows memfd files (guest memory shared with virtiofsd).
	Memfd bool
}

// Check fails t unless process pid matches w. It returns the descriptors it saw, by
// number, for the test's log.
func Check(t *testing.T, pid int, w Want) map[int]string {
	t.Helper()
	st := status(t, pid)
	if st["NoNewPrivs"] != "1" {
		t.Errorf("pid %d: NoNewPrivs %q, want 1", pid, st["NoNewPrivs"])
	}
	if st["Seccomp"] != strconv.Itoa(w.Seccomp) {
		t.Errorf("pid %d: Seccomp %q, want %d", pid, st["Seccomp"], w.Seccomp)
	}
	want := jail.CapMask(w.Caps)
	for field, m := range map[string]uint64{"CapEff": want, "CapPrm": want, "CapBnd": want, "CapInh": 0, "CapAmb": 0} {
		got, err := strconv.ParseUint(st[field], 16, 64)
		if err != nil || got != m {
			t.Errorf("pid %d: %s %q, want %016x", pid, field, st[field], m)
		}
	}

	sockets := unixSockets(t, pid)
	fdDir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, err := os.ReadDir(fdDir)
	if err != nil {
		t.Fatalf("list descriptors: %v", err)
	}
	fds := map[int]string{}
	var clients int
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		target, err := os.Readlink(filepath.Join(fdDir, e.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		fds[n] = target
		if why := unexpected(target, w, sockets); why == errUnbound && clients < w.ClientSockets {
			clients++
		} else if why != "" {
			t.Errorf("pid %d: descriptor %d -> %s: %s", pid, n, target, why)
		}
	}
	for fd := range 3 {
		if _, ok := fds[fd]; !ok {
			t.Errorf("pid %d: descriptor %d is not open", pid, fd)
		}
	}
	return fds
}

// errUnbound is unexpected's answer for an unbound unix socket (Want.ClientSockets).
const errUnbound = "unbound unix socket"

// unexpected says why a descriptor target is not one w allows, or "".
func unexpected(target string, w Want, sockets map[string]string) string {
	switch {
	case strings.HasPrefix(target, "anon_inode:"), strings.HasPrefix(target, "pipe:"):
		return "" // QEMU's and the runtime's own eventfds, epoll, signalfd, pipes
	case strings.HasPrefix(target, "socket:["):
		inode := strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]")
		path, ok := sockets[inode]
		if !ok {
			return "not a unix socket"
		}
		if path == "" {
			return errUnbound
		}
		if w.SocketDir == "" || filepath.Dir(path) != filepath.Clean(w.SocketDir) {
			return fmt.Sprintf("unix socket bound to %q, want one in %s", path, w.SocketDir)
		}
		return ""
	case strings.HasPrefix(target, "/dev/"):
		for _, d := range w.Devices {
			if target == d {
				return ""
			}
		}
		return fmt.Sprintf("device not in %v", w.Devices)
	case w.Memfd && strings.HasPrefix(target, "/memfd:"):
		return ""
	case strings.HasPrefix(target, "/"):
		for _, d := range w.Dirs {
			if target == d || strings.HasPrefix(target, filepath.Clean(d)+"/") {
				return ""
			}
		}
		return fmt.Sprintf("file outside %v", w.Dirs)
	}
	return "unknown kind"
}

// status reads /proc/<pid>/status.
func status(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

// unixSockets maps the inode of every unix socket in pid's network namespace to its
// address ("" when unbound).
func unixSockets(t *testing.T, pid int) map[string]string {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/net/unix", pid))
	if err != nil {
		t.Fatalf("unix sockets: %v", err)
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		// Num RefCount Protocol Flags Type St Inode [Path]
		fields := strings.Fields(sc.Text())
		if len(fields) < 7 {
			continue
		}
		path := ""
		if len(fields) > 7 {
			path = fields[7]
		}
		m[fields[6]] = path
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("unix sockets: %v", err)
	}
	return m
}
