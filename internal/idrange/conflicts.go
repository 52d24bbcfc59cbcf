package idrange

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Host is where Conflicts looks for the host's own use of ids: the root of /etc and
// of /proc (tests point them elsewhere) and the lease directory of Vessel's own slots.
type Host struct {
	Etc, Proc, LeaseDir string
}

// DefaultHost is the host's /etc, /proc and DefaultLeaseDir.
var DefaultHost = Host{Etc: "/etc", Proc: "/proc", LeaseDir: DefaultLeaseDir}

// Conflicts lists what on the host uses ids of p besides Vessel's sandboxes: ranges
// delegated in subuid and subgid (rootless podman, other user-namespace tools), users
// and groups in passwd and group, and running processes (not exited ones awaiting their
// reaper) whose uid is in p but in no slot leased in h.LeaseDir. A VMM on such an id
// would share it with that user. Files that do not exist are skipped.
func Conflicts(p Pool, h Host) ([]string, error) {
	in := func(id uint64) bool { return id >= uint64(p.Start) && id <= uint64(p.End) }
	var out []string
	for _, f := range []string{"subuid", "subgid"} {
		err := eachLine(filepath.Join(h.Etc, f), func(fields []string) {
			if len(fields) < 3 {
				return
			}
			start, err1 := strconv.ParseUint(fields[1], 10, 32)
			n, err2 := strconv.ParseUint(fields[2], 10, 32)
			if err1 != nil || err2 != nil || n == 0 {
				return
			}
			if start <= uint64(p.End) && uint64(p.Start) < start+n {
				out = append(out, fmt.Sprintf("/etc/%s gives %s ids %d-%d", f, fields[0], start, start+n-1))
			}
		})
		if err != nil {
			return nil, err
		}
	}
	for _, f := range []string{"passwd", "group"} {
		err := eachLine(filepath.Join(h.Etc, f), func(fields []string) {
			if len(fields) < 3 {
				return
			}
			if id, err := strconv.ParseUint(fields[2], 10, 32); err == nil && in(id) {
				out = append(out, fmt.Sprintf("/etc/%s has %s with id %d", f, fields[0], id))
			}
		})
		if err != nil {
			return nil, err
		}
	}
	held, err := liveLeases(h.LeaseDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	leased := func(id uint64) bool {
		for _, s := range held {
			if id >= uint64(s) && id < uint64(s)+Size {
				return true
			}
		}
		return false
	}
	procs, err := os.ReadDir(h.Proc)
	if err != nil {
		return nil, err
	}
	for _, e := range procs {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(h.Proc, e.Name(), "status"))
		if err != nil {
			continue // gone
		}
		if id, ok := liveUID(string(b)); ok && in(id) && !leased(id) {
			out = append(out, fmt.Sprintf("process %s runs as uid %d", e.Name(), id))
		}
	}
	return out, nil
}

// liveUID is the real uid in a /proc/PID/status text, unless the process has exited and
// waits to be reaped (state Z or X): such a process holds no files, memory or
// credentials any more, whoever its parent is and however slowly it reaps.
func liveUID(status string) (uint64, bool) {
	for _, l := range strings.Split(status, "\n") { // State comes before Uid
		if v, ok := strings.CutPrefix(l, "State:"); ok {
			if st := strings.TrimSpace(v); strings.HasPrefix(st, "Z") || strings.HasPrefix(st, "X") {
				return 0, false
			}
		}
		if v, ok := strings.CutPrefix(l, "Uid:"); ok {
			f := strings.Fields(v)
			if len(f) == 0 {
				return 0, false
			}
			id, err := strconv.ParseUint(f[0], 10, 32)
			return id, err == nil
		}
	}
	return 0, false
}

// eachLine calls f with the colon-separated fields of each line of path; a missing file
// has no lines.
func eachLine(path string, f func([]string)) error {
	file, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer file.Close()
	sc := bufio.NewScanner(file)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
			f(strings.Split(l, ":"))
		}
	}
	return sc.Err()
}
