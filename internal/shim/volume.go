package shim

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/vessel-containers/vessel/internal/config"
	"github.com/vessel-containers/vessel/internal/directvolume"
	"github.com/vessel-containers/vessel/internal/oci"
	"github.com/vessel-containers/vessel/internal/sandbox"
	"github.com/vessel-containers/vessel/internal/shimproto"
)

// directVolumes turns each bind mount of plan whose source is a recorded direct-assigned
// volume into a disk mount of the volume's device (oci.DirectVolume), which the sandbox
// attaches to the VM and the guest mounts, and returns the volume paths it turned.
// hypervisor.disable_block_device_use refuses such a mount: the record says the volume
// must not be shared as files.
func (s *service) directVolumes(plan *oci.Container, cfg *config.Config) ([]string, error) {
	var volumes []string
	for i, m := range plan.Mounts {
		if !oci.IsBind(m) {
			continue
		}
		info, err := directvolume.Lookup(s.volRoot, m.Source)
		if errdefs.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("mount %s: %w", m.Destination, err)
		}
		if cfg != nil && cfg.Hypervisor.DisableBlockDeviceUse {
			return nil, fmt.Errorf("mount %s: %s is a direct-assigned volume (device %s), which hypervisor.disable_block_device_use forbids attaching: %w",
				m.Destination, m.Source, info.Device, errdefs.ErrFailedPrecondition)
		}
		st, err := os.Stat(info.Device)
		if err != nil {
			return nil, fmt.Errorf("mount %s: direct volume %s: %w", m.Destination, m.Source, err)
		}
		if plan.Mounts[i], err = oci.DirectVolume(m, info.Device, info.FSType, info.Options, st.Mode().IsRegular()); err != nil {
			return nil, err
		}
		volumes = append(volumes, m.Source)
	}
	return volumes, nil
}

// noteDirectVolumes records that sandbox id holds the volumes, for `vessel direct-volume
// stats`. A record that cannot be written leaves stats unanswered, not the container.
func (s *service) noteDirectVolumes(ctx context.Context, volumes []string, id string) {
	s.volMu.Lock()
	defer s.volMu.Unlock()
	for _, v := range volumes {
		if err := directvolume.SetSandbox(s.volRoot, v, id); err != nil {
			log.G(ctx).WithError(err).WithField("volume", v).Warn("direct volume: record the sandbox")
			continue
		}
		if s.volumes == nil {
			s.volumes = map[string]bool{}
		}
		s.volumes[v] = true
	}
}

// forgetDirectVolumes clears the records' note of sandbox id, which ended.
func (s *service) forgetDirectVolumes(ctx context.Context, id string) {
	s.volMu.Lock()
	defer s.volMu.Unlock()
	for v := range s.volumes {
		if err := directvolume.ClearSandbox(s.volRoot, v, id); err != nil {
			log.G(ctx).WithError(err).WithField("volume", v).Warn("direct volume: forget the sandbox")
		}
	}
	s.volumes = nil
}

// socketAPI answers the metrics socket's paths other than /metrics for sandbox sb:
// shimproto.DirectVolumeStatsPath, shimproto.DirectVolumeResizePath and
// shimproto.ProcessesPath.
func (s *service) socketAPI(sb *sandbox.Sandbox) http.Handler {
	mux := http.NewServeMux()
	mux.Handle(shimproto.DirectVolumeStatsPath, s.volumeStats(sb))
	mux.Handle(shimproto.DirectVolumeResizePath, s.volumeResize(sb))
	mux.Handle(shimproto.ProcessesPath, s.processes())
	mux.Handle(shimproto.InitLogPath, s.initLog()) // initlog.go
	return mux
}

// volumeResize answers shimproto.DirectVolumeResizePath (POST) for sandbox sb: it grows
// the recorded volume's disk and the file system the guest mounted from it
// (sandbox.ResizeDisk) to the size query parameter, in bytes.
func (s *service) volumeResize(sb *sandbox.Sandbox) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "direct volume resize is a POST", http.StatusMethodNotAllowed)
			return
		}
		q := r.URL.Query()
		vol := q.Get(shimproto.DirectVolumeQuery)
		size, err := strconv.ParseUint(q.Get(shimproto.DirectVolumeSizeQuery), 10, 64)
		if err != nil {
			httpError(w, fmt.Errorf("direct volume %s: size %q: %w: %w", vol, q.Get(shimproto.DirectVolumeSizeQuery), err, errdefs.ErrInvalidArgument))
			return
		}
		info, err := directvolume.Lookup(s.volRoot, vol)
		if err != nil {
			httpError(w, err)
			return
		}
		if err := sb.ResizeDisk(r.Context(), info.Device, size); err != nil {
			httpError(w, fmt.Errorf("direct volume %s: %w", vol, err))
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// volumeStats answers shimproto.DirectVolumeStatsPath for sandbox sb: the usage of the
// file system of the recorded volume's device in the guest, as directvolume.Stats.
func (s *service) volumeStats(sb *sandbox.Sandbox) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		vol := r.URL.Query().Get(shimproto.DirectVolumeQuery)
		info, err := directvolume.Lookup(s.volRoot, vol)
		if err != nil {
			httpError(w, err)
			return
		}
		st, err := sb.DiskStats(r.Context(), info.Device)
		if err != nil {
			httpError(w, fmt.Errorf("direct volume %s: %w", vol, err))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(directvolume.Stats{
			BytesTotal: st.GetBytesTotal(), BytesFree: st.GetBytesFree(), BytesAvailable: st.GetBytesAvailable(),
			InodesTotal: st.GetInodesTotal(), InodesFree: st.GetInodesFree(),
		})
	})
}

// httpError writes err with the status its errdefs kind maps to.
func httpError(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	switch {
	case errdefs.IsNotFound(err):
		code = http.StatusNotFound
	case errdefs.IsInvalidArgument(err):
		code = http.StatusBadRequest
	case errdefs.IsFailedPrecondition(err):
		code = http.StatusPreconditionFailed
	case errdefs.IsNotImplemented(err):
		code = http.StatusNotImplemented
	}
	http.Error(w, err.Error(), code)
}

// processes answers shimproto.ProcessesPath: the processes of the container named by the
// query parameter, with what ps shows of them, as a JSON array of shimproto.Process.
func (s *service) processes() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.URL.Query().Get(shimproto.ContainerQuery)
		c, creating, err := s.lookup(id)
		if err != nil {
			httpError(w, err)
			return
		}
		out := []shimproto.Process{}
		if !creating {
			procs, err := c.ctr.Processes(r.Context())
			if err != nil {
				httpError(w, fmt.Errorf("container %s: %w", id, err))
				return
			}
			for _, p := range procs {
				out = append(out, shimproto.Process{
					Pid: p.GetPid(), ExecID: p.GetExecId(), Cmdline: p.GetCmdline(), Comm: p.GetComm(),
					UID: p.GetUid(), PPid: p.GetPpid(), TTY: p.GetTty(), Stat: p.GetStat(),
					CPUTimeMs: p.GetCpuTimeMs(), StartUnixMs: p.GetStartTimeUnixMs(),
				})
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	})
}
