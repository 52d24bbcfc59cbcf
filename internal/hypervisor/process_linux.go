package hypervisor

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
)

// ProcessStartTime is field 22 of /proc/<pid>/stat: when the process started, in clock
// ticks after boot. With the pid it names one process for the life of the system.
func ProcessStartTime(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("read process %d start time: %w", pid, err)
	}
	// The command name (field 2) is in parentheses and may hold spaces: split after it.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("process %d: malformed stat %q", pid, b)
	}
	fields := bytes.Fields(b[i+1:])
	// fields[0] is field 3 (state): field 22 is fields[19].
	if len(fields) < 20 {
		return 0, fmt.Errorf("process %d: stat has %d fields after the name, want at least 20", pid, len(fields))
	}
	st, err := strconv.ParseUint(string(fields[19]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("process %d: start time %q: %w", pid, fields[19], err)
	}
	return st, nil
}
