package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
)

var _ agentv1.CPUsService = (*Service)(nil)

// cpuPlace is where a CPU sits in the topology: its socket and core.
type cpuPlace struct{ socket, core uint32 }

// OfflineCPUs offlines the online guest CPUs at the places asked for, before the host
// unplugs those vCPUs: the kernel moves their tasks and interrupts to the CPUs that stay.
// A place with no online CPU is skipped (offline already); one holding CPU 0 is refused
// before anything changes.
func (s *Service) OfflineCPUs(ctx context.Context, req *agentv1.OfflineCPUsRequest) (*agentv1.OfflineCPUsResponse, error) {
	dir := filepath.Join(s.cfg.SysDir, "devices/system/cpu")
	byPlace, err := cpusByPlace(dir)
	if err != nil {
		return nil, err
	}
	var cpus []uint32
	for _, p := range req.GetPlaces() {
		found := byPlace[cpuPlace{p.GetSocketId(), p.GetCoreId()}]
		if slices.Contains(found, 0) {
			return nil, fmt.Errorf("offline cpus: socket %d core %d holds cpu0, which cannot go offline: %w", p.GetSocketId(), p.GetCoreId(), errdefs.ErrInvalidArgument)
		}
		cpus = append(cpus, found...)
	}
	for _, cpu := range cpus {
		ctl := filepath.Join(dir, fmt.Sprintf("cpu%d", cpu), "online")
		if err := os.WriteFile(ctl, []byte("0"), 0); err != nil {
			return nil, fmt.Errorf("offline cpu%d: %w", cpu, err)
		}
	}
	log.G(ctx).Debugf("offlined cpus %v", cpus)
	return &agentv1.OfflineCPUsResponse{Cpus: cpus}, nil
}

// cpusByPlace maps each place in the topology (topology/physical_package_id and core_id)
// to its online CPUs under dir (sysfs devices/system/cpu): the kernel removes an offline
// CPU's topology directory.
func cpusByPlace(dir string) (map[cpuPlace][]uint32, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	out := map[cpuPlace][]uint32{}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), "cpu")
		if !ok {
			continue
		}
		cpu, err := strconv.ParseUint(rest, 10, 32)
		if err != nil {
			continue
		}
		var ids [2]uint32
		missing := false
		for i, name := range []string{"physical_package_id", "core_id"} {
			b, err := os.ReadFile(filepath.Join(dir, e.Name(), "topology", name))
			if err != nil {
				missing = true // no topology: offline, or a slot that is not present
				break
			}
			v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32)
			if err != nil {
				return nil, fmt.Errorf("%s topology %s: %w", e.Name(), name, err)
			}
			ids[i] = uint32(v)
		}
		if missing {
			continue
		}
		p := cpuPlace{ids[0], ids[1]}
		out[p] = append(out[p], uint32(cpu))
	}
	for _, c := range out {
		slices.Sort(c)
	}
	return out, nil
}
