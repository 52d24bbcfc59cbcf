package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/log"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli/v2"

	"github.com/vessel-containers/vessel/internal/shimclient"
)

func updateCommand() *cli.Command {
	return &cli.Command{
		Name:      "update",
		Usage:     "update container resource constraints",
		ArgsUsage: "<container-id>",
		Description: `The update command changes the resource limits of a running container in its VM (its
cgroup there): only the limits given change. Give them with the flags below, or as OCI
linux.resources JSON with --resources (a file, or - for stdin):

   {
     "memory": {"limit": 0, "reservation": 0, "swap": 0},
     "cpu": {"shares": 0, "quota": 0, "period": 0, "realtimeRuntime": 0,
             "realtimePeriod": 0, "cpus": "", "mems": ""},
     "blockIO": {"weight": 0},
     "pids": {"limit": 0}
   }

Memory sizes take a unit suffix (k, m, g, t, p; binary) and -1 for unlimited. The VM was
sized when it booted: limits above its size do not make it grow.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "resources", Aliases: []string{"r"}, Usage: "path to the file containing the resources to update or '-' to read from the standard input"},
			&cli.StringFlag{Name: "blkio-weight", Usage: "specifies per cgroup weight, range is from 10 to 1000"},
			&cli.StringFlag{Name: "cpu-period", Usage: "CPU CFS period to be used for hardcapping (in usecs). 0 to use system default"},
			&cli.StringFlag{Name: "cpu-quota", Usage: "CPU CFS hardcap limit (in usecs). Allowed cpu time in a given period"},
			&cli.StringFlag{Name: "cpu-share", Usage: "CPU shares (relative weight vs. other containers)"},
			&cli.StringFlag{Name: "cpu-rt-period", Usage: "CPU realtime period to be used for hardcapping (in usecs). 0 to use system default"},
			&cli.StringFlag{Name: "cpu-rt-runtime", Usage: "CPU realtime hardcap limit (in usecs). Allowed cpu time in a given period"},
			&cli.StringFlag{Name: "cpuset-cpus", Usage: "CPU(s) to use"},
			&cli.StringFlag{Name: "cpuset-mems", Usage: "Memory node(s) to use"},
			&cli.StringFlag{Name: "memory", Usage: "Memory limit (in bytes)"},
			&cli.StringFlag{Name: "memory-reservation", Usage: "Memory reservation or soft_limit (in bytes)"},
			&cli.StringFlag{Name: "memory-swap", Usage: "Total memory usage (memory + swap); set '-1' to enable unlimited swap"},
			&cli.IntFlag{Name: "pids-limit", Usage: "Maximum number of pids allowed in the container"},
			&cli.StringFlag{Name: "kernel-memory", Usage: "accepted and ignored, as by runc: kernel memory limits are deprecated"},
			&cli.StringFlag{Name: "kernel-memory-tcp", Usage: "accepted and ignored, as by runc: kernel memory limits are deprecated"},
		},
		Action: func(c *cli.Context) error {
			id, err := oneArg(c)
			if err != nil {
				return err
			}
			res, err := resourcesOf(c)
			if err != nil {
				return err
			}
			r, err := newRuntime(c)
			if err != nil {
				return err
			}
			anyRes, err := typeurl.MarshalAnyToProto(res)
			if err != nil {
				return fmt.Errorf("encode resources: %w", err)
			}
			ctx := c.Context
			check := func(st specs.ContainerState) error {
				if st == specs.StateStopped || st == specs.StateCreating {
					return fmt.Errorf("cannot update a %s container", st)
				}
				return nil
			}
			return r.withShim(ctx, id, check, func(cl *shimclient.Client) error {
				if _, err := cl.Update(ctx, &taskAPI.UpdateTaskRequest{ID: id, Resources: anyRes}); err != nil {
					return fmt.Errorf("update container %s: %w", id, err)
				}
				return nil
			})
		},
	}
}

// resourcesOf reads --resources, or builds resources from the flags that are set.
func resourcesOf(c *cli.Context) (*specs.LinuxResources, error) {
	for _, f := range []string{"kernel-memory", "kernel-memory-tcp"} {
		if c.IsSet(f) {
			log.G(c.Context).Warnf("--%s is ignored: kernel memory limits are deprecated", f)
		}
	}
	if src := c.String("resources"); src != "" {
		var data []byte
		var err error
		if src == "-" {
			data, err = io.ReadAll(os.Stdin)
		} else {
			data, err = os.ReadFile(src)
		}
		if err != nil {
			return nil, fmt.Errorf("read resources: %w", err)
		}
		var res specs.LinuxResources
		if err := json.Unmarshal(data, &res); err != nil {
			return nil, fmt.Errorf("parse resources: %w", err)
		}
		return &res, nil
	}
	res := &specs.LinuxResources{}
	u64 := func(name string, set func(uint64)) error {
		if !c.IsSet(name) {
			return nil
		}
		v, err := strconv.ParseUint(c.String(name), 10, 64)
		if err != nil {
			return fmt.Errorf("invalid value for --%s: %w", name, err)
		}
		set(v)
		return nil
	}
	i64 := func(name string, set func(int64)) error {
		if !c.IsSet(name) {
			return nil
		}
		v, err := strconv.ParseInt(c.String(name), 10, 64)
		if err != nil {
			return fmt.Errorf("invalid value for --%s: %w", name, err)
		}
		set(v)
		return nil
	}
	size := func(name string, set func(int64)) error {
		if !c.IsSet(name) {
			return nil
		}
		v, err := parseSize(c.String(name))
		if err != nil {
			return fmt.Errorf("invalid value for --%s: %w", name, err)
		}
		set(v)
		return nil
	}
	cpu := func() *specs.LinuxCPU {
		if res.CPU == nil {
			res.CPU = &specs.LinuxCPU{}
		}
		return res.CPU
	}
	mem := func() *specs.LinuxMemory {
		if res.Memory == nil {
			res.Memory = &specs.LinuxMemory{}
		}
		return res.Memory
	}
	errs := []error{
		u64("cpu-period", func(v uint64) { cpu().Period = &v }),
		i64("cpu-quota", func(v int64) { cpu().Quota = &v }),
		u64("cpu-share", func(v uint64) { cpu().Shares = &v }),
		u64("cpu-rt-period", func(v uint64) { cpu().RealtimePeriod = &v }),
		i64("cpu-rt-runtime", func(v int64) { cpu().RealtimeRuntime = &v }),
		size("memory", func(v int64) { mem().Limit = &v }),
		size("memory-reservation", func(v int64) { mem().Reservation = &v }),
		size("memory-swap", func(v int64) { mem().Swap = &v }),
		u64("blkio-weight", func(v uint64) {
			w := uint16(min(v, math.MaxUint16))
			res.BlockIO = &specs.LinuxBlockIO{Weight: &w}
		}),
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if c.IsSet("cpuset-cpus") {
		cpu().Cpus = c.String("cpuset-cpus")
	}
	if c.IsSet("cpuset-mems") {
		cpu().Mems = c.String("cpuset-mems")
	}
	if c.IsSet("pids-limit") {
		limit := int64(c.Int("pids-limit"))
		res.Pids = &specs.LinuxPids{Limit: &limit}
	}
	return res, nil
}

// parseSize parses a memory size as runc does (docker's RAMInBytes): a number with an
// optional binary unit (b, k, kb, m, mb, g, gb, t, tb, p, pb; any case); -1 is unlimited.
func parseSize(s string) (int64, error) {
	if s == "-1" {
		return -1, nil
	}
	t := strings.ToLower(strings.TrimSpace(s))
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"pb", 1 << 50}, {"tb", 1 << 40}, {"gb", 1 << 30}, {"mb", 1 << 20}, {"kb", 1 << 10}, {"p", 1 << 50}, {"t", 1 << 40}, {"g", 1 << 30}, {"m", 1 << 20}, {"k", 1 << 10}, {"b", 1}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSuffix(t, u.suffix), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v < 0 || v*float64(mult) > math.MaxInt64 {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	return int64(v * float64(mult)), nil
}
