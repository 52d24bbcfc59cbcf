package shim

import (
	"fmt"

	"github.com/containerd/cgroups/v3/cgroup2/stats"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
)

// metricsV2 converts the agent's cgroup v2 figures into the type containerd and ctr decode.
func metricsV2(s *agentv1.StatsContainerResponse) *stats.Metrics {
	m := &stats.Metrics{}
	if c := s.GetCpu(); c != nil {
		m.CPU = &stats.CPUStat{
			UsageUsec: c.UsageUsec, UserUsec: c.UserUsec, SystemUsec: c.SystemUsec,
			NrPeriods: c.NrPeriods, NrThrottled: c.NrThrottled, ThrottledUsec: c.ThrottledUsec,
		}
	}
	if mem := s.GetMemory(); mem != nil {
		m.Memory = &stats.MemoryStat{
			Usage: mem.Usage, UsageLimit: mem.Limit, MaxUsage: mem.MaxUsage,
			Anon: mem.Anon, File: mem.File, SwapUsage: mem.SwapUsage,
		}
		m.MemoryEvents = &stats.MemoryEvents{Oom: mem.OomEvents, OomKill: mem.OomKillEvents}
	}
	if p := s.GetPids(); p != nil {
		m.Pids = &stats.PidsStat{Current: p.Current, Limit: p.Limit}
	}
	if io := s.GetIo(); io != nil {
		m.Io = &stats.IOStat{Usage: []*stats.IOEntry{{Rbytes: io.ReadBytes, Wbytes: io.WriteBytes, Rios: io.ReadIos, Wios: io.WriteIos}}}
	}
	for _, n := range s.GetNetworks() {
		m.Network = append(m.Network, &stats.NetworkStat{Name: n.Name, RxBytes: n.RxBytes, RxPackets: n.RxPackets, TxBytes: n.TxBytes, TxPackets: n.TxPackets})
	}
	return m
}

// configPathFromOptions returns the configuration path containerd passed in the runtime
// options (runtimeoptions.v1.Options.ConfigPath, as for Kata), or "" when none was given.
func configPathFromOptions(r *taskAPI.CreateTaskRequest) (string, error) {
	if r.Options == nil || len(r.Options.GetValue()) == 0 {
		return "", nil
	}
	v, err := typeurl.UnmarshalAny(r.Options)
	if err != nil {
		// Options of a type Vessel does not know (e.g. runc's) carry no config path.
		return "", nil //nolint:nilerr // unknown option types are ignored on purpose
	}
	opts, ok := v.(*runtimeoptions.Options)
	if !ok {
		return "", nil
	}
	if len(opts.ConfigBody) > 0 {
		return "", fmt.Errorf("runtime options: config_body is not supported, use config_path: %w", errdefs.ErrNotImplemented)
	}
	return opts.ConfigPath, nil
}
