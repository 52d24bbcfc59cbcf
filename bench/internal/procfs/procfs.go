// Package procfs reads the few /proc figures the benchmark reports: proportional set size
// (PSS) from smaps_rollup, process trees, per-process CPU time, host CPU use and load, and
// the host's memory.
package procfs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vessel-containers/vessel/internal/procid"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times; 100 on every Linux
// architecture Vessel runs on.
const clockTicks = 100

// PSS returns the proportional set size of pid in bytes, from /proc/<pid>/smaps_rollup.
func PSS(pid int) (uint64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, fmt.Errorf("pss of %d: %w", pid, err)
	}
	kb, ok := fieldKB(data, "Pss:")
	if !ok {
		return 0, fmt.Errorf("pss of %d: no Pss line in smaps_rollup", pid)
	}
	return kb * 1024, nil
}

// fieldKB finds "Key:   123 kB" in a /proc file.
func fieldKB(data []byte, key string) (uint64, bool) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), key)
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return 0, false
		}
		v, err := strconv.ParseUint(f[0], 10, 64)
		return v, err == nil
	}
	return 0, false
}

// Stat is what the harness needs from /proc/<pid>/stat.
type Stat struct {
	Pid  int
	PPid int
	Comm string
	// CPU is user plus system time.
	CPU time.Duration
}

// ReadStat parses /proc/<pid>/stat.
func ReadStat(pid int) (Stat, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return Stat{}, fmt.Errorf("stat of %d: %w", pid, err)
	}
	return parseStat(pid, data)
}

// parseStat converts procid's parse of a stat line into the harness's figures.
func parseStat(pid int, data []byte) (Stat, error) {
	st, err := procid.ParseStat(data)
	if err != nil {
		return Stat{}, fmt.Errorf("stat of %d: %w", pid, err)
	}
	return Stat{
		Pid:  pid,
		PPid: st.PPid,
		Comm: st.Comm,
		CPU:  time.Duration(st.UTime+st.STime) * time.Second / clockTicks,
	}, nil
}

// Tree returns pid and all its descendants (pid first). Processes that exit while the tree
// is read are left out.
func Tree(pid int) ([]Stat, error) {
	all, err := allStats()
	if err != nil {
		return nil, err
	}
	children := map[int][]Stat{}
	var root *Stat
	for i := range all {
		children[all[i].PPid] = append(children[all[i].PPid], all[i])
		if all[i].Pid == pid {
			root = &all[i]
		}
	}
	if root == nil {
		return nil, fmt.Errorf("process %d: %w", pid, os.ErrNotExist)
	}
	out := []Stat{*root}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i].Pid]...)
	}
	return out, nil
}

func allStats() ([]Stat, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	var out []Stat
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := ReadStat(pid)
		if err != nil {
			continue // exited meanwhile
		}
		out = append(out, st)
	}
	return out, nil
}

// TreePSS sums the PSS of pid and its descendants and returns it with the processes
// counted.
func TreePSS(pid int) (uint64, []Stat, error) {
	tree, err := Tree(pid)
	if err != nil {
		return 0, nil, err
	}
	var sum uint64
	for _, p := range tree {
		v, err := PSS(p.Pid)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return 0, nil, err
		}
		sum += v
	}
	return sum, tree, nil
}

// TreeCPU sums the CPU time of pid and its descendants.
func TreeCPU(pid int) (time.Duration, error) {
	tree, err := Tree(pid)
	if err != nil {
		return 0, err
	}
	var sum time.Duration
	for _, p := range tree {
		sum += p.CPU
	}
	return sum, nil
}

// CPUTimes is the host's aggregate CPU time from /proc/stat, in ticks.
type CPUTimes struct {
	Idle  uint64 // idle + iowait
	Total uint64
}

// ReadCPUTimes reads the "cpu" line of /proc/stat.
func ReadCPUTimes() (CPUTimes, error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return CPUTimes{}, fmt.Errorf("read /proc/stat: %w", err)
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		return CPUTimes{}, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var t CPUTimes
	for i, s := range f[1:] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return CPUTimes{}, fmt.Errorf("/proc/stat: %w", err)
		}
		// guest and guest_nice (fields 9, 10) are already included in user and nice.
		if i >= 8 {
			break
		}
		t.Total += v
		if i == 3 || i == 4 {
			t.Idle += v
		}
	}
	return t, nil
}

// BusyFraction is the share of CPU time (all cores) that was not idle between a and b.
func BusyFraction(a, b CPUTimes) float64 {
	total := b.Total - a.Total
	if total == 0 {
		return 0
	}
	return 1 - float64(b.Idle-a.Idle)/float64(total)
}

// LoadAvg returns the 1-minute load average.
func LoadAvg() float64 {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}

// MemInfo returns MemTotal and MemAvailable from a meminfo file's contents, in bytes.
func MemInfo(data []byte) (total, available uint64, err error) {
	t, ok1 := fieldKB(data, "MemTotal:")
	a, ok2 := fieldKB(data, "MemAvailable:")
	if !ok1 || !ok2 {
		return 0, 0, errors.New("meminfo: MemTotal or MemAvailable missing")
	}
	return t * 1024, a * 1024, nil
}

// HostMemInfo reads the host's /proc/meminfo.
func HostMemInfo() (total, available uint64, err error) {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, 0, fmt.Errorf("read /proc/meminfo: %w", err)
	}
	return MemInfo(data)
}

// Cmdline returns a process's arguments.
func Cmdline(pid int) ([]string, error) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return nil, fmt.Errorf("cmdline of %d: %w", pid, err)
	}
	return strings.Split(strings.TrimRight(string(data), "\x00"), "\x00"), nil
}

// ByComm returns the processes whose command name is comm.
func ByComm(comm string) ([]Stat, error) {
	all, err := allStats()
	if err != nil {
		return nil, err
	}
	var out []Stat
	for _, st := range all {
		if st.Comm == comm {
			out = append(out, st)
		}
	}
	return out, nil
}
