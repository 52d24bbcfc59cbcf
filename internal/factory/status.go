package factory

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/errdefs"

	factoryv1 "github.com/vessel-containers/vessel/api/factory/v1"
)

// TemplateInfo describes the template on disk.
type TemplateInfo struct {
	Path string
	// Present is set when template.json exists.
	Present bool
	// Problem says why the template is unusable (corrupt, stale); empty when usable.
	Problem string
	Hash    string
	Shape   Shape
	Created time.Time
	// BootTime is how long the template VM took to boot until its agent answered.
	BootTime time.Duration
	// MemorySize is the guest RAM file's size; MemoryTouched is what it occupies on tmpfs
	// (the pages the template guest touched, shared by every VM restored from it).
	MemorySize    int64
	MemoryTouched int64
	StateSize     int64
	// Mounted is set when the template directory is a mount point (the factory's tmpfs).
	Mounted bool
}

// TemplateInfo reads the template's state; the zero value when templating is off.
func (f *Factory) TemplateInfo(ctx context.Context) (TemplateInfo, error) {
	if f.tpl == nil {
		return TemplateInfo{}, nil
	}
	info := TemplateInfo{Path: f.tpl.dir}
	if _, err := os.Stat(f.tpl.dir); errors.Is(err, os.ErrNotExist) {
		return info, nil // nothing to lock or read: do not create the lock file
	}
	info.Mounted, _ = isMountPoint(f.tpl.dir)
	unlock, err := f.tpl.lock(ctx, false)
	if err != nil {
		return info, err
	}
	defer unlock()
	m, err := f.tpl.load()
	switch {
	case errors.Is(err, errNoTemplate):
		return info, nil
	case err != nil:
		info.Present, info.Problem = true, err.Error()
		return info, nil
	}
	info.Present = true
	info.Hash, info.Shape, info.Created, info.BootTime = m.Hash, m.Shape, m.Created, m.BootTime
	info.MemorySize, info.StateSize = m.MemorySize, m.StateSize
	info.MemoryTouched = allocatedBytes(filepath.Join(f.tpl.dir, m.MemoryFile))
	if base := f.baseKey(); base.Hash() != m.Hash {
		info.Problem = "stale: the configuration now differs in " + joinNames(m.Key.Diff(base))
	}
	return info, nil
}

// CacheInfo is what the cache server said, or why it could not be asked.
type CacheInfo struct {
	Endpoint string
	Status   *factoryv1.StatusResponse
	Err      error
}

// CacheInfo asks the cache server; the zero value when the cache is off.
func (f *Factory) CacheInfo(ctx context.Context) CacheInfo {
	if f.cfg.CacheEndpoint == "" {
		return CacheInfo{}
	}
	st, err := CacheStatus(ctx, f.cfg.CacheEndpoint)
	return CacheInfo{Endpoint: f.cfg.CacheEndpoint, Status: st, Err: err}
}

// WriteStatus prints the template's and the cache's state for `vessel factory status`.
func WriteStatus(w io.Writer, tpl TemplateInfo, cache CacheInfo, now time.Time) {
	if tpl.Path != "" {
		fmt.Fprintf(w, "template: %s\n", tpl.Path)
		switch {
		case !tpl.Present:
			fmt.Fprintf(w, "  state:   absent (vessel factory init builds it; the first sandbox would too)\n")
		case tpl.Problem != "" && tpl.Hash == "":
			fmt.Fprintf(w, "  state:   unusable: %s (rebuilt on next use)\n", tpl.Problem)
		case tpl.Problem != "":
			fmt.Fprintf(w, "  state:   unusable: %s (rebuilt on next use)\n", tpl.Problem)
			writeTemplateDetails(w, tpl, now)
		default:
			fmt.Fprintf(w, "  state:   ready, matches the configuration\n")
			writeTemplateDetails(w, tpl, now)
		}
		if tpl.Mounted {
			fmt.Fprintf(w, "  tmpfs:   mounted\n")
		}
	}
	if cache.Endpoint != "" {
		fmt.Fprintf(w, "cache: %s\n", cache.Endpoint)
		st := cache.Status
		switch {
		case errdefs.IsNotFound(cache.Err):
			fmt.Fprintf(w, "  state:   not running (start it with: vessel factory init --cache N)\n")
		case cache.Err != nil:
			fmt.Fprintf(w, "  state:   unreachable: %v\n", cache.Err)
		default:
			fmt.Fprintf(w, "  state:   serving (pid %d): %d of %d VMs ready, %d booting\n", st.GetPid(), len(st.GetReady()), st.GetTarget(), st.GetBooting())
			fmt.Fprintf(w, "  config:  %s, %s\n", st.GetConfigHash(), shapeFromProto(st.GetShape()))
			fmt.Fprintf(w, "  counts:  %d handed out, %d discarded, %d failed boots\n", st.GetHandedOut(), st.GetDiscarded(), st.GetBootFailures())
			if e := st.GetLastError(); e != "" {
				fmt.Fprintf(w, "  last boot error: %s\n", firstLine(e))
			}
			for _, vm := range st.GetReady() {
				origin := "cold boot"
				if vm.GetFromTemplate() {
					origin = "from template"
				}
				age := now.Sub(time.Unix(0, vm.GetReadyUnixNano())).Round(time.Second)
				fmt.Fprintf(w, "  vm %s  pid %d  %s  ready for %s\n", vm.GetVmId(), vm.GetPid(), origin, age)
			}
		}
	}
	if tpl.Path == "" && cache.Endpoint == "" {
		fmt.Fprintln(w, "factory: off (neither factory.enable_template nor factory.vm_cache_number is set)")
	}
}

func writeTemplateDetails(w io.Writer, tpl TemplateInfo, now time.Time) {
	fmt.Fprintf(w, "  config:  %s, %s\n", tpl.Hash, tpl.Shape)
	fmt.Fprintf(w, "  memory:  %d MiB file, %d MiB touched (shared by every VM restored from it); device state %d KiB\n",
		tpl.MemorySize>>20, tpl.MemoryTouched>>20, tpl.StateSize>>10)
	fmt.Fprintf(w, "  built:   %s (%s ago), template VM booted in %s\n",
		tpl.Created.Format(time.RFC3339), now.Sub(tpl.Created).Round(time.Second), tpl.BootTime.Round(time.Millisecond))
}

// String is "1 vCPU (max 2), 256 MiB (max 1024 MiB, 10 slots)".
func (s Shape) String() string {
	return fmt.Sprintf("%d vCPU (max %d), %d MiB (max %d MiB, %d slots)", s.VCPUs, s.MaxVCPUs, s.MemoryMiB, s.MaxMemoryMiB, s.MemorySlots)
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
