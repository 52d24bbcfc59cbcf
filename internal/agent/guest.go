//go:build linux

package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
	"github.com/vessel-containers/vessel/internal/agent/libct"
	"github.com/vessel-containers/vessel/internal/agent/storage"
	"github.com/vessel-containers/vessel/internal/version"
)

// onlineWait bounds how long OnlineCPUMem waits for hot-plugged CPUs to appear.
const onlineWait = 10 * time.Second

// OnlineCPUMem onlines offline CPUs (nb_cpus of them, all when 0) and, unless cpu_only,
// offline memory blocks (movable where the kernel allows: memory.go). With wait, it
// retries until nb_cpus CPUs were onlined (hot-plugged CPUs appear in sysfs a little after
// the host added them).
func (s *Service) OnlineCPUMem(ctx context.Context, req *agentv1.OnlineCPUMemRequest) (*agentv1.Empty, error) {
	want := int(req.GetNbCpus())
	deadline := time.Now().Add(onlineWait)
	onlined := 0
	for {
		n, err := onlineResources(filepath.Join(s.cfg.SysDir, "devices/system/cpu"), "cpu", "online", "1", want-onlined)
		if err != nil {
			return nil, err
		}
		onlined += n
		if !req.GetWait() || want == 0 || onlined >= want {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%w: onlined %d of %d CPUs in %s", errdefs.ErrUnavailable, onlined, want, onlineWait)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	if !req.GetCpuOnly() {
		if err := onlineMemory(filepath.Join(s.cfg.SysDir, "devices/system/memory")); err != nil { // memory.go
			return nil, err
		}
	}
	log.G(ctx).Debugf("onlined %d CPUs", onlined)
	return &agentv1.Empty{}, nil
}

// onlineResources writes value to the control file of every offline <prefix>N under dir,
// at most limit of them (all when limit <= 0). It returns how many it onlined.
func onlineResources(dir, prefix, file, value string, limit int) (int, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("list %s: %w", dir, err)
	}
	var names []string
	for _, e := range entries {
		if rest, ok := strings.CutPrefix(e.Name(), prefix); ok {
			if _, err := strconv.Atoi(rest); err == nil {
				names = append(names, e.Name())
			}
		}
	}
	slices.SortFunc(names, func(a, b string) int {
		x, _ := strconv.Atoi(a[len(prefix):])
		y, _ := strconv.Atoi(b[len(prefix):])
		return x - y
	})
	n := 0
	for _, name := range names {
		if limit > 0 && n >= limit {
			break
		}
		ctl := filepath.Join(dir, name, file)
		cur, err := os.ReadFile(ctl)
		if err != nil {
			continue // cpu0 often has no online file: it cannot go offline
		}
		state := strings.TrimSpace(string(cur))
		if state == value || (value == "1" && state != "0") || (value == "online" && state != "offline") {
			continue
		}
		if err := os.WriteFile(ctl, []byte(value), 0); err != nil {
			return n, fmt.Errorf("online %s: %w", ctl, err)
		}
		n++
	}
	return n, nil
}

// MemHotplugByProbe tells the kernel about hot-added memory at the given physical addresses,
// then onlines offline memory blocks.
func (s *Service) MemHotplugByProbe(ctx context.Context, req *agentv1.MemHotplugByProbeRequest) (*agentv1.Empty, error) {
	if len(req.GetMemHotplugProbeAddr()) == 0 {
		return nil, fmt.Errorf("%w: mem_hotplug_probe_addr is empty", errdefs.ErrInvalidArgument)
	}
	probe := filepath.Join(s.cfg.SysDir, "devices/system/memory/probe")
	if _, err := os.Stat(probe); err != nil {
		return nil, fmt.Errorf("%w: %s is missing: the guest kernel has no memory probe interface (CONFIG_ARCH_MEMORY_PROBE)", errdefs.ErrNotImplemented, probe)
	}
	for _, addr := range req.GetMemHotplugProbeAddr() {
		if err := os.WriteFile(probe, []byte(fmt.Sprintf("0x%x", addr)), 0); err != nil {
			return nil, fmt.Errorf("probe memory at 0x%x: %w", addr, err)
		}
	}
	if err := onlineMemory(filepath.Join(s.cfg.SysDir, "devices/system/memory")); err != nil { // memory.go
		return nil, err
	}
	return &agentv1.Empty{}, nil
}

// GetGuestDetails reports the memory block size and what the agent supports.
func (s *Service) GetGuestDetails(ctx context.Context, req *agentv1.GuestDetailsRequest) (*agentv1.GuestDetailsResponse, error) {
	resp := &agentv1.GuestDetailsResponse{
		AgentDetails: &agentv1.AgentDetails{
			Version:         version.Version,
			InitDaemon:      os.Getpid() == 1,
			StorageHandlers: storage.Drivers(),
			SupportsSeccomp: libct.SeccompSupported(),
			PolicyDigest:    s.gate.Policy().Digest(),
			DeviceHandlers:  nil, // the agent has no block or VFIO device handler
		},
	}
	memDir := filepath.Join(s.cfg.SysDir, "devices/system/memory")
	if req.GetMemBlockSize() {
		b, err := os.ReadFile(filepath.Join(memDir, "block_size_bytes"))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("memory block size: %w", err)
		}
		if err == nil {
			v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 16, 64)
			if err != nil {
				return nil, fmt.Errorf("memory block size %q is not hex: %w", b, err)
			}
			resp.MemBlockSizeBytes = v
		}
	}
	if req.GetMemHotplugProbe() {
		_, err := os.Stat(filepath.Join(memDir, "probe"))
		resp.SupportMemHotplugProbe = err == nil
	}
	return resp, nil
}

// GetMetrics reports a few agent and guest figures in the Prometheus text format.
func (s *Service) GetMetrics(ctx context.Context, _ *agentv1.GetMetricsRequest) (*agentv1.Metrics, error) {
	var b strings.Builder
	gauge := func(name, help string, v float64) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s gauge\n%s %s\n", name, help, name, name, strconv.FormatFloat(v, 'g', -1, 64))
	}
	counter := func(name, help string, v float64) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s counter\n%s %s\n", name, help, name, name, strconv.FormatFloat(v, 'g', -1, 64))
	}
	gauge("vessel_agent_goroutines", "Goroutines in the agent.", float64(runtime.NumGoroutine()))
	if status, err := os.ReadFile("/proc/self/status"); err == nil {
		if kb, ok := procKB(string(status), "VmRSS"); ok {
			gauge("vessel_agent_rss_bytes", "Resident memory of the agent.", float64(kb*1024))
		}
	}
	gauge("vessel_agent_uptime_seconds", "Seconds since the agent started serving.", time.Since(s.started).Seconds())
	if s.cfg.StartedAt > 0 {
		gauge("vessel_agent_start_boot_seconds", "Guest boot clock when the agent's main began (kernel boot time).", s.cfg.StartedAt.Seconds())
	}
	if at := s.readyAt.Load(); at > 0 {
		gauge("vessel_agent_ready_boot_seconds", "Guest boot clock when the agent began serving.", time.Duration(at).Seconds())
	}
	s.mu.Lock()
	n := len(s.containers)
	s.mu.Unlock()
	gauge("vessel_agent_containers", "Containers the agent manages.", float64(n))
	counter("vessel_agent_sessions_total", "Transport sessions started (host connections).", float64(s.sessions()))
	if mi, err := os.ReadFile("/proc/meminfo"); err == nil {
		if kb, ok := procKB(string(mi), "MemTotal"); ok {
			gauge("vessel_guest_memory_total_bytes", "Guest MemTotal.", float64(kb*1024))
		}
		if kb, ok := procKB(string(mi), "MemAvailable"); ok {
			gauge("vessel_guest_memory_available_bytes", "Guest MemAvailable.", float64(kb*1024))
		}
	}
	if st, err := os.ReadFile("/proc/stat"); err == nil {
		writeGuestCPU(&b, string(st))
	}
	if la, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(la))
		for i, name := range []string{"load1", "load5", "load15"} {
			if i < len(f) {
				if v, err := strconv.ParseFloat(f[i], 64); err == nil {
					gauge("vessel_guest_"+name, "Guest load average.", v)
				}
			}
		}
	}
	return &agentv1.Metrics{Metrics: b.String()}, nil
}

// userHZ is the unit of /proc/stat's times (USER_HZ, 100 on every Linux architecture Vessel
// runs on).
const userHZ = 100

// writeGuestCPU writes vessel_guest_cpu_seconds_total by mode from the "cpu" line of
// /proc/stat (all CPUs together).
func writeGuestCPU(b *strings.Builder, stat string) {
	line, _, _ := strings.Cut(stat, "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return
	}
	const name = "vessel_guest_cpu_seconds_total"
	fmt.Fprintf(b, "# HELP %s Guest CPU time of all CPUs, by mode.\n# TYPE %s counter\n", name, name)
	for i, mode := range []string{"user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"} {
		ticks, err := strconv.ParseUint(f[1+i], 10, 64)
		if err != nil {
			continue
		}
		fmt.Fprintf(b, "%s{mode=%q} %s\n", name, mode, strconv.FormatFloat(float64(ticks)/userHZ, 'g', -1, 64))
	}
}

// procKB finds "Key:   123 kB" in /proc/meminfo or /proc/self/status contents.
func procKB(contents, key string) (uint64, bool) {
	for _, line := range strings.Split(contents, "\n") {
		rest, ok := strings.CutPrefix(line, key+":")
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
