package agent

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
)

// readFlatKeyed parses a cgroup v2 flat-keyed file ("key value" per line), e.g. cpu.stat,
// memory.stat, memory.events.
func readFlatKeyed(path string) (map[string]uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := make(map[string]uint64)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 2 {
			continue
		}
		v, err := parseValue(fields[1])
		if err != nil {
			return nil, fmt.Errorf("%s: key %s: %w", path, fields[0], err)
		}
		out[fields[0]] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return out, nil
}

// readSingle parses a single-value file (memory.current, pids.max, ...). "max" reads as
// math.MaxUint64.
func readSingle(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	v, err := parseValue(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}

func parseValue(s string) (uint64, error) {
	if s == "max" {
		return math.MaxUint64, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("value %q is not a number or \"max\"", s)
	}
	return v, nil
}

// ioStat sums io.stat over devices. Lines look like
// "253:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0".
func readIOStat(path string) (*agentv1.IOStats, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	st := &agentv1.IOStats{}
	for _, line := range strings.Split(string(b), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		for _, kv := range fields[1:] {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				continue
			}
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%s: %s: %q is not a number", path, k, v)
			}
			switch k {
			case "rbytes":
				st.ReadBytes += n
			case "wbytes":
				st.WriteBytes += n
			case "rios":
				st.ReadIos += n
			case "wios":
				st.WriteIos += n
			}
		}
	}
	return st, nil
}

// cgroupStats reads a container's statistics from its cgroup v2 directory. Files of
// controllers that are not enabled are skipped; a missing directory is an error.
func cgroupStats(dir string) (*agentv1.StatsContainerResponse, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("cgroup %s: %w", dir, err)
	}
	resp := &agentv1.StatsContainerResponse{}
	var errs []error
	// tolerate reports whether err is only a missing file (controller not enabled).
	tolerate := func(err error) bool {
		if err == nil || errors.Is(err, os.ErrNotExist) {
			return true
		}
		errs = append(errs, err)
		return false
	}

	cpu, err := readFlatKeyed(filepath.Join(dir, "cpu.stat"))
	if tolerate(err) && cpu != nil {
		resp.Cpu = &agentv1.CPUStats{
			UsageUsec: cpu["usage_usec"], UserUsec: cpu["user_usec"], SystemUsec: cpu["system_usec"],
			NrPeriods: cpu["nr_periods"], NrThrottled: cpu["nr_throttled"], ThrottledUsec: cpu["throttled_usec"],
		}
	}

	if cur, err := readSingle(filepath.Join(dir, "memory.current")); tolerate(err) && err == nil {
		m := &agentv1.MemoryStats{Usage: cur}
		if v, err := readSingle(filepath.Join(dir, "memory.max")); tolerate(err) {
			m.Limit = v
		}
		if v, err := readSingle(filepath.Join(dir, "memory.peak")); tolerate(err) {
			m.MaxUsage = v
		}
		if v, err := readSingle(filepath.Join(dir, "memory.swap.current")); tolerate(err) {
			m.SwapUsage = v
		}
		if ms, err := readFlatKeyed(filepath.Join(dir, "memory.stat")); tolerate(err) && ms != nil {
			m.Anon, m.File = ms["anon"], ms["file"]
		}
		if ev, err := readFlatKeyed(filepath.Join(dir, "memory.events")); tolerate(err) && ev != nil {
			m.OomEvents, m.OomKillEvents = ev["oom"], ev["oom_kill"]
		}
		resp.Memory = m
	}

	if cur, err := readSingle(filepath.Join(dir, "pids.current")); tolerate(err) && err == nil {
		p := &agentv1.PidsStats{Current: cur}
		if v, err := readSingle(filepath.Join(dir, "pids.max")); tolerate(err) {
			p.Limit = v
		}
		resp.Pids = p
	}

	if io, err := readIOStat(filepath.Join(dir, "io.stat")); tolerate(err) && io != nil {
		resp.Io = io
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("stats of %s: %w", dir, err)
	}
	return resp, nil
}
