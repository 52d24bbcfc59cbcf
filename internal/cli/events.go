package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/signal"
	"syscall"
	"time"

	"github.com/containerd/cgroups/v3/cgroup2/stats"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli/v2"

	"github.com/vessel-containers/vessel/internal/shimclient"
	"github.com/vessel-containers/vessel/internal/store"
)

func eventsCommand() *cli.Command {
	return &cli.Command{
		Name:      "events",
		Usage:     "display container events such as OOM notifications and cpu, memory, and IO usage statistics",
		ArgsUsage: "<container-id>",
		Description: `The events command prints JSON events, one per line, as runc does: {"type":"stats",...}
with the container's cgroup figures from its VM every --interval, and {"type":"oom",...}
when the kernel's OOM killer struck in the container (OOM kills are looked for every
second between stats events, so one is reported within about a second). It ends when the container stops
or vessel is interrupted. --stats prints one stats event and exits.`,
		Flags: []cli.Flag{
			&cli.DurationFlag{Name: "interval", Value: 5 * time.Second, Usage: "set the stats collection interval"},
			&cli.BoolFlag{Name: "stats", Usage: "display the container's stats then exit"},
		},
		Action: func(c *cli.Context) error {
			id, err := oneArg(c)
			if err != nil {
				return err
			}
			if c.Duration("interval") <= 0 {
				return errors.New("duration interval must be greater than 0")
			}
			r, err := newRuntime(c)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			ctr, err := r.load(id)
			if err != nil {
				return err
			}
			if r.statusOf(ctx, ctr).status == specs.StateStopped {
				return fmt.Errorf("container with id %s is not running", id)
			}
			return r.events(ctx, c.App.Writer, ctr, c.Duration("interval"), c.Bool("stats"))
		},
	}
}

// event is runc's event JSON.
type event struct {
	Type string `json:"type"`
	ID   string `json:"id"`
	Data any    `json:"data,omitempty"`
}

// oomPoll is how often events looks for OOM kills between stats events, so an OOM is
// reported within about this long whatever --interval says.
const oomPoll = time.Second

func (r *ociRuntime) events(ctx context.Context, w io.Writer, ctr *store.Container, interval time.Duration, once bool) error {
	cl, err := r.dial(ctx, ctr)
	if err != nil {
		return err
	}
	defer cl.Close()
	enc := json.NewEncoder(w)
	var oomKills uint64
	first := true
	nextStats := time.Now()
	for {
		m, err := metrics(ctx, cl, ctr.ID)
		if err != nil {
			if ctx.Err() != nil || (!once && r.statusOf(ctx, ctr).status == specs.StateStopped) {
				return nil
			}
			return err
		}
		if ev := m.GetMemoryEvents(); ev != nil {
			if !first && ev.OomKill > oomKills {
				if err := enc.Encode(event{Type: "oom", ID: ctr.ID}); err != nil {
					return fmt.Errorf("write event: %w", err)
				}
			}
			oomKills = ev.OomKill
		}
		first = false
		if now := time.Now(); !now.Before(nextStats) {
			if err := enc.Encode(event{Type: "stats", ID: ctr.ID, Data: convertStats(m)}); err != nil {
				return fmt.Errorf("write event: %w", err)
			}
			if once {
				return nil
			}
			nextStats = now.Add(interval)
		}
		wait := min(oomPoll, time.Until(nextStats))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

func metrics(ctx context.Context, cl *shimclient.Client, id string) (*stats.Metrics, error) {
	resp, err := cl.Stats(ctx, &taskAPI.StatsRequest{ID: id})
	if err != nil {
		return nil, fmt.Errorf("stats of %s: %w", id, err)
	}
	v, err := typeurl.UnmarshalAny(resp.Stats)
	if err != nil {
		return nil, fmt.Errorf("decode stats of %s: %w", id, err)
	}
	m, ok := v.(*stats.Metrics)
	if !ok {
		return nil, fmt.Errorf("stats of %s are %T, want cgroup v2 metrics", id, v)
	}
	return m, nil
}

// The stats event's data, in runc's layout (libcontainer's types.Stats): CPU times in
// nanoseconds, memory in bytes.
type (
	statsData struct {
		CPU               cpuStats           `json:"cpu"`
		Memory            memoryStats        `json:"memory"`
		Pids              pidsStats          `json:"pids"`
		Blkio             blkioStats         `json:"blkio"`
		NetworkInterfaces []networkInterface `json:"network_interfaces,omitempty"`
	}
	cpuStats struct {
		Usage      cpuUsage   `json:"usage"`
		Throttling throttling `json:"throttling"`
	}
	cpuUsage struct {
		Total  uint64 `json:"total,omitempty"`
		Kernel uint64 `json:"kernel"`
		User   uint64 `json:"user"`
	}
	throttling struct {
		Periods          uint64 `json:"periods,omitempty"`
		ThrottledPeriods uint64 `json:"throttledPeriods,omitempty"`
		ThrottledTime    uint64 `json:"throttledTime,omitempty"`
	}
	memoryStats struct {
		Usage memoryEntry       `json:"usage,omitempty"`
		Swap  memoryEntry       `json:"swap,omitempty"`
		Raw   map[string]uint64 `json:"raw,omitempty"`
	}
	memoryEntry struct {
		Limit   uint64 `json:"limit"`
		Usage   uint64 `json:"usage,omitempty"`
		Max     uint64 `json:"max,omitempty"`
		Failcnt uint64 `json:"failcnt"`
	}
	pidsStats struct {
		Current uint64 `json:"current,omitempty"`
		Limit   uint64 `json:"limit,omitempty"`
	}
	blkioStats struct {
		IoServiceBytesRecursive []blkioEntry `json:"ioServiceBytesRecursive,omitempty"`
		IoServicedRecursive     []blkioEntry `json:"ioServicedRecursive,omitempty"`
	}
	blkioEntry struct {
		Major uint64 `json:"major,omitempty"`
		Minor uint64 `json:"minor,omitempty"`
		Op    string `json:"op,omitempty"`
		Value uint64 `json:"value,omitempty"`
	}
	networkInterface struct {
		Name      string `json:"name"`
		RxBytes   uint64 `json:"rx_bytes"`
		RxPackets uint64 `json:"rx_packets"`
		TxBytes   uint64 `json:"tx_bytes"`
		TxPackets uint64 `json:"tx_packets"`
	}
)

func convertStats(m *stats.Metrics) statsData {
	var s statsData
	if c := m.GetCPU(); c != nil {
		s.CPU.Usage = cpuUsage{Total: c.UsageUsec * 1000, Kernel: c.SystemUsec * 1000, User: c.UserUsec * 1000}
		s.CPU.Throttling = throttling{Periods: c.NrPeriods, ThrottledPeriods: c.NrThrottled, ThrottledTime: c.ThrottledUsec * 1000}
	}
	if mem := m.GetMemory(); mem != nil {
		s.Memory.Usage = memoryEntry{Limit: mem.UsageLimit, Usage: mem.Usage, Max: mem.MaxUsage}
		s.Memory.Swap = memoryEntry{Limit: mem.SwapLimit, Usage: mem.SwapUsage}
		s.Memory.Raw = map[string]uint64{"anon": mem.Anon, "file": mem.File}
		if ev := m.GetMemoryEvents(); ev != nil {
			s.Memory.Raw["oom"] = ev.Oom
			s.Memory.Raw["oom_kill"] = ev.OomKill
			s.Memory.Usage.Failcnt = ev.Max
		}
	}
	if p := m.GetPids(); p != nil {
		s.Pids = pidsStats{Current: p.Current, Limit: p.Limit}
	}
	if io := m.GetIo(); io != nil {
		for _, e := range io.Usage {
			s.Blkio.IoServiceBytesRecursive = append(s.Blkio.IoServiceBytesRecursive,
				blkioEntry{Major: e.Major, Minor: e.Minor, Op: "Read", Value: e.Rbytes},
				blkioEntry{Major: e.Major, Minor: e.Minor, Op: "Write", Value: e.Wbytes})
			s.Blkio.IoServicedRecursive = append(s.Blkio.IoServicedRecursive,
				blkioEntry{Major: e.Major, Minor: e.Minor, Op: "Read", Value: e.Rios},
				blkioEntry{Major: e.Major, Minor: e.Minor, Op: "Write", Value: e.Wios})
		}
	}
	for _, n := range m.GetNetwork() {
		s.NetworkInterfaces = append(s.NetworkInterfaces, networkInterface{Name: n.Name, RxBytes: n.RxBytes, RxPackets: n.RxPackets, TxBytes: n.TxBytes, TxPackets: n.TxPackets})
	}
	return s
}
