package agent

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
)

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times: 100 on every Linux
// architecture the guest runs on.
const clockTicks = 100

// procStat is what ps(1) reads of one process from /proc/PID/stat and /proc/PID/status.
type procStat struct {
	comm                string
	state               byte
	ppid, pgrp, session int
	ttyNr, tpgid        int
	utime, stime        uint64
	nice                int
	threads             int
	startTicks          uint64
	locked              bool
	euid                uint32
}

// readProcStat reads pid's stat and status files below proc (normally "/proc").
func readProcStat(proc string, pid int) (procStat, error) {
	var st procStat
	dir := proc + "/" + strconv.Itoa(pid)
	data, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return st, err
	}
	// comm is between the first '(' and the last ')': it may hold spaces and parentheses.
	open, end := bytes.IndexByte(data, '('), bytes.LastIndexByte(data, ')')
	if open < 0 || end < open {
		return st, fmt.Errorf("%s/stat: no command name", dir)
	}
	st.comm = string(data[open+1 : end])
	f := strings.Fields(string(data[end+1:]))
	// f[0] is field 3 of proc(5) (state); field N is f[N-3].
	if len(f) < 20 {
		return st, fmt.Errorf("%s/stat: %d fields after the command name, want at least 20", dir, len(f))
	}
	num := func(field int) int64 { v, _ := strconv.ParseInt(f[field-3], 10, 64); return v }
	st.state = f[0][0]
	st.ppid, st.pgrp, st.session = int(num(4)), int(num(5)), int(num(6))
	st.ttyNr, st.tpgid = int(num(7)), int(num(8))
	st.utime, st.stime = uint64(num(14)), uint64(num(15))
	st.nice, st.threads = int(num(19)), int(num(20))
	st.startTicks = uint64(num(22))
	status, err := os.ReadFile(dir + "/status")
	if err != nil {
		return st, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		fields := strings.Fields(v)
		switch {
		case k == "Uid" && len(fields) >= 2:
			u, _ := strconv.ParseUint(fields[1], 10, 32)
			st.euid = uint32(u)
		case k == "VmLck" && len(fields) >= 1:
			st.locked = fields[0] != "0"
		}
	}
	return st, nil
}

// ttyName names a tty_nr as ps does: pts/N, ttyN, ttySN, console, or "?" for none.
func ttyName(nr int) string {
	if nr == 0 {
		return "?"
	}
	major, minor := (nr>>8)&0xfff, (nr&0xff)|((nr>>12)&0xfff00)
	switch {
	case major >= 136 && major <= 143:
		return "pts/" + strconv.Itoa((major-136)*256+minor)
	case major == 4 && minor < 64:
		return "tty" + strconv.Itoa(minor)
	case major == 4:
		return "ttyS" + strconv.Itoa(minor-64)
	case major == 5 && minor == 1:
		return "console"
	}
	return "?"
}

// bsdStat is ps's STAT column: the state, then < (high priority), N (low priority),
// L (locked pages), s (session leader), l (multi-threaded), + (foreground process group).
func (st procStat) bsdStat(pid int) string {
	var b strings.Builder
	b.WriteByte(st.state)
	switch {
	case st.nice < 0:
		b.WriteByte('<')
	case st.nice > 0:
		b.WriteByte('N')
	}
	if st.locked {
		b.WriteByte('L')
	}
	if st.session == pid {
		b.WriteByte('s')
	}
	if st.threads > 1 {
		b.WriteByte('l')
	}
	if st.tpgid > 0 && st.tpgid == st.pgrp {
		b.WriteByte('+')
	}
	return b.String()
}

// bootTimeUnix reads the boot time (btime) from proc's stat file, in Unix seconds.
func bootTimeUnix(proc string) (int64, error) {
	data, err := os.ReadFile(proc + "/stat")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("%s/stat: no btime", proc)
}

// fillPsInfo adds what ps shows of pid to info; a process that is gone leaves it as is.
func fillPsInfo(info *agentv1.ProcessInfo, proc string, pid int, btime int64) {
	st, err := readProcStat(proc, pid)
	if err != nil {
		return
	}
	info.Uid = st.euid
	info.Ppid = uint32(st.ppid)
	info.Tty = ttyName(st.ttyNr)
	info.Stat = st.bsdStat(pid)
	info.CpuTimeMs = (st.utime + st.stime) * 1000 / clockTicks
	info.StartTimeUnixMs = btime*1000 + int64(st.startTicks*1000/clockTicks)
	info.Comm = st.comm
}
