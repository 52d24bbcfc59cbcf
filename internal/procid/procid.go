// Package procid names one process for the life of the system: its pid and its start time
// (field 22 of /proc/<pid>/stat). A pid alone can be reused by an unrelated process after
// the first one exits; the pair cannot. Code that records a process to act on it later (a
// VMM, a shim, a stand-in) records an ID and acts only while the ID still matches.
//
// The package also holds Vessel's one /proc/<pid>/stat parser (ParseStat).
package procid

import (
	"bytes"
	"fmt"
	"strconv"
)

// ID is one process: its pid and its start time in clock ticks after boot.
type ID struct {
	Pid       int    `json:"pid"`
	StartTime uint64 `json:"start_time"`
}

func (id ID) String() string { return fmt.Sprintf("pid %d (start time %d)", id.Pid, id.StartTime) }

// Stat is the part of /proc/<pid>/stat that Vessel reads.
type Stat struct {
	Pid int
	// Comm is the command name (field 2), without its parentheses.
	Comm string
	// State is field 3: 'R', 'S', 'D', 'Z' (zombie), 'T', ...
	State byte
	PPid  int
	// UTime and STime are the user and system CPU time in clock ticks (fields 14 and 15).
	UTime, STime uint64
	// StartTime is when the process started, in clock ticks after boot (field 22).
	StartTime uint64
}

// ParseStat parses the content of /proc/<pid>/stat.
func ParseStat(data []byte) (Stat, error) {
	pidEnd := bytes.IndexByte(data, ' ')
	// The command name is in parentheses and may hold spaces and parentheses: it ends at
	// the last ')'.
	open, end := bytes.IndexByte(data, '('), bytes.LastIndexByte(data, ')')
	if pidEnd < 0 || open != pidEnd+1 || end < open {
		return Stat{}, fmt.Errorf("malformed /proc stat %q: want \"pid (comm) state ...\"", data)
	}
	pid, err := strconv.Atoi(string(data[:pidEnd]))
	if err != nil {
		return Stat{}, fmt.Errorf("malformed /proc stat %q: pid: %w", data, err)
	}
	f := bytes.Fields(data[end+1:])
	// f[0] is field 3 (state), so field n is f[n-3]; field 22 is f[19].
	if len(f) < 20 {
		return Stat{}, fmt.Errorf("/proc stat of %d has %d fields after the command name, want at least 20", pid, len(f))
	}
	if len(f[0]) != 1 {
		return Stat{}, fmt.Errorf("/proc stat of %d: state %q is not one letter", pid, f[0])
	}
	s := Stat{Pid: pid, Comm: string(data[open+1 : end]), State: f[0][0]}
	for _, x := range []struct {
		field int
		dst   *uint64
	}{{14, &s.UTime}, {15, &s.STime}, {22, &s.StartTime}} {
		if *x.dst, err = strconv.ParseUint(string(f[x.field-3]), 10, 64); err != nil {
			return Stat{}, fmt.Errorf("/proc stat of %d: field %d: %w", pid, x.field, err)
		}
	}
	if s.PPid, err = strconv.Atoi(string(f[1])); err != nil {
		return Stat{}, fmt.Errorf("/proc stat of %d: ppid: %w", pid, err)
	}
	return s, nil
}
