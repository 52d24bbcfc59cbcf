package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/log"

	"github.com/vessel-containers/vessel/bench/internal/report"
	"github.com/vessel-containers/vessel/bench/internal/stats"
	"github.com/vessel-containers/vessel/internal/config"
	"github.com/vessel-containers/vessel/internal/factory"
	"github.com/vessel-containers/vessel/internal/hypervisor"
)

// warmMode is one factory configuration the warm measure runs.
type warmMode struct {
	name            string
	template, cache bool
}

// warmModes are the factory configurations, in run order.
var warmModes = []warmMode{
	{name: "template", template: true},
	{name: "cache", cache: true},
	{name: "template+cache", template: true, cache: true},
}

const (
	// cacheReadyTimeout bounds the wait for the cache server to have a VM ready.
	cacheReadyTimeout = 3 * time.Minute
	// factoryStopTimeout bounds the cache server's exit after SIGTERM.
	factoryStopTimeout = time.Minute
	vesselBinary       = "vessel"
)

// warm runs `ctr run --rm … true` Runs times with each factory configuration, each run
// followed by a runc run, and counts only runs whose VM came from the factory. With
// templates it also reads the memory of idle sandboxes restored from one template.
func (e *env) warm(ctx context.Context) error {
	res := &report.Warm{}
	defer func() { e.res.Warm = res }()
	var runc []time.Duration
	var errs []error
	for _, m := range warmModes {
		wm, rs, err := e.warmMode(ctx, m)
		res.Modes = append(res.Modes, wm)
		runc = append(runc, rs...)
		res.Runc = stats.Seconds(runc)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", m.name, err))
			if ctx.Err() != nil {
				break
			}
		}
		if m.template && !m.cache && len(e.opts.MemoryCounts) > 0 && err == nil {
			if err := e.warmMemory(ctx, res); err != nil {
				errs = append(errs, fmt.Errorf("template memory: %w", err))
			}
		}
	}
	return errors.Join(errs...)
}

// warmMode runs one factory configuration and returns its figures and the interleaved runc
// runs.
func (e *env) warmMode(ctx context.Context, m warmMode) (report.WarmMode, []time.Duration, error) {
	out := report.WarmMode{Name: m.name}
	slug := strings.ReplaceAll(m.name, "+", "-")
	fac, err := e.startFactory(ctx, slug, m)
	if err != nil {
		return out, nil, err
	}
	defer fac.stop(context.WithoutCancel(ctx))

	rt := runtimeSpec{name: report.Vessel + "-" + slug, typ: VesselRuntime, config: fac.config}
	var warm, runc []time.Duration
	var errs []error
	for i := range e.opts.Runs {
		if m.cache {
			if err := fac.waitReady(ctx); err != nil {
				return out, runc, err
			}
		}
		id := fmt.Sprintf("warm-%s-%d", slug, i)
		offset := e.logOffset()
		total, _, err := e.runRm(ctx, rt, id, "", "true")
		if err != nil {
			errs = append(errs, err)
			if len(errs) >= maxColdFailures || ctx.Err() != nil {
				break
			}
			continue
		}
		from, why, err := e.vmSource(ctx, offset, id)
		switch {
		case err != nil:
			errs = append(errs, err)
		case from:
			warm = append(warm, total)
		default:
			out.ColdFallbacks++
			out.FallbackWhy = why
		}
		rtotal, _, err := e.runRm(ctx, runcSpec, fmt.Sprintf("warm-runc-%s-%d", slug, i), "", "true")
		if err != nil {
			errs = append(errs, err)
			continue
		}
		runc = append(runc, rtotal)
	}
	out.True = stats.Seconds(warm)
	if out.ColdFallbacks > 0 {
		errs = append(errs, fmt.Errorf("%d of %d runs booted cold: %s", out.ColdFallbacks, e.opts.Runs, out.FallbackWhy))
	}
	log.G(ctx).Infof("warm start (%s): %d runs from the factory", m.name, len(warm))
	return out, runc, errors.Join(errs...)
}

// warmMemory starts idle sandboxes from the template (as many as the memory measure's
// largest count) and reads their PSS: the template's pages are shared between them.
func (e *env) warmMemory(ctx context.Context, res *report.Warm) error {
	fac, err := e.startFactory(ctx, "template-memory", warmModes[0])
	if err != nil {
		return err
	}
	defer fac.stop(context.WithoutCancel(ctx))
	n := slices.Max(e.opts.MemoryCounts)
	rt := runtimeSpec{name: report.Vessel + "-template", typ: VesselRuntime, config: fac.config}
	p, err := e.memoryPoint(ctx, rt, n)
	res.Memory = &p
	if err == nil && e.opts.KSM {
		kp, kerr := e.ksmVariant(ctx, rt, n)
		res.MemoryKSM, err = &kp, kerr
	}
	if rerr := e.ctd.RemoveAllContainers(ctx); rerr != nil {
		err = errors.Join(err, rerr)
	}
	return err
}

// vmSource reads the shim's lines for sandbox id since offset: whether its VM came from
// the factory and, if not, the shim's reason.
func (e *env) vmSource(ctx context.Context, offset int64, id string) (bool, string, error) {
	deadline := time.Now().Add(3 * time.Second)
	for {
		lines, err := e.readLog(offset)
		if err != nil {
			return false, "", err
		}
		for _, l := range lines {
			if l.Fields["sandbox"] != id {
				continue
			}
			switch l.Msg {
			case "vm from the factory":
				return true, "", nil
			case "factory has no vm for this sandbox; booting cold", "vm from the factory failed; stopping it and booting cold":
				return false, l.Fields["error"], nil
			}
		}
		if hasDelete(lines, id) || time.Now().After(deadline) {
			return false, "", fmt.Errorf("%s: the shim logged neither a vm from the factory nor a cold boot", id)
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return false, "", err
		}
	}
}

// factoryRun is a factory set up for one warm mode: its configuration file, the template
// it built and the cache server it runs.
type factoryRun struct {
	vessel   string
	config   string
	endpoint string
	server   *exec.Cmd
	exited   chan struct{}
}

// startFactory writes the mode's configuration (the benchmark's own with the mode's
// factory settings) under containerd's directory, so that the final sweep finds whatever a
// failed run leaves, builds the template and starts the cache server.
func (e *env) startFactory(ctx context.Context, slug string, m warmMode) (_ *factoryRun, retErr error) {
	dir := filepath.Join(e.ctd.Dir, "factory-"+slug)
	// Searchable: the cache's VMs (the VMM unprivileged by default) reach their exports
	// below it by path.
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return nil, fmt.Errorf("factory dir: %w", err)
	}
	cfg := factoryConfig(e.cfg, m, dir)
	f := &factoryRun{
		vessel:   filepath.Join(e.opts.ShimDir, vesselBinary),
		config:   filepath.Join(dir, "configuration.toml"),
		endpoint: cfg.Factory.VMCacheEndpoint,
	}
	if err := writeConfig(cfg, f.config); err != nil {
		return nil, fmt.Errorf("factory %s: %w", m.name, err)
	}
	defer func() {
		if retErr != nil {
			f.stop(context.WithoutCancel(ctx))
		}
	}()
	// With a cache, the server builds the template itself before it boots VMs from it.
	if m.template && !m.cache {
		if out, err := f.vesselOutput(ctx, "factory", "init"); err != nil {
			return nil, fmt.Errorf("vessel factory init: %w: %s", err, strings.TrimSpace(string(out)))
		}
	}
	if m.cache {
		if err := f.startServer(dir); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// factoryConfig is base with mode m's factory settings; the template, the cache socket and
// the other files of the factory are under dir.
func factoryConfig(base *config.Config, m warmMode, dir string) *config.Config {
	cfg := base.Clone()
	cfg.Factory.EnableTemplate = m.template
	if m.template && cfg.Hypervisor.VMMIDRange != "" {
		// A hypervisor that cannot restore templates with an unprivileged VMM (QEMU before
		// 8.2) refuses the combination: the template modes measure it unjailed.
		if err := hypervisor.CheckUnprivilegedTemplates(cfg.Hypervisor.Driver, cfg.Hypervisor.Path); err != nil {
			log.L.WithError(err).Info("warm: template modes run the VMM unprivileged off (hypervisor.vmm_id_range = \"\")")
			cfg.Hypervisor.VMMIDRange = ""
		}
	}
	cfg.Factory.TemplatePath = filepath.Join(dir, "template")
	cfg.Factory.VMCacheNumber = 0
	if m.cache {
		cfg.Factory.VMCacheNumber = 1
	}
	cfg.Factory.VMCacheEndpoint = filepath.Join(dir, "cache", "factory.sock")
	return cfg
}

// vesselOutput runs `vessel --config <mode's config> args...` and returns its output.
func (f *factoryRun) vesselOutput(ctx context.Context, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, ctrTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, f.vessel, append([]string{"--config", f.config}, args...)...)
	cmd.WaitDelay = time.Second
	return cmd.CombinedOutput()
}

// startServer starts `vessel factory init --cache 1` in its own process group; its output
// goes to a log file beside the configuration.
func (f *factoryRun) startServer(dir string) error {
	logf, err := os.Create(filepath.Join(dir, "cache-server.log"))
	if err != nil {
		return fmt.Errorf("cache server log: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(f.vessel, "--config", f.config, "factory", "init", "--cache", "1")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start vm cache server: %w", err)
	}
	f.server, f.exited = cmd, make(chan struct{})
	go func() { // owned by f: stop waits for it
		_ = cmd.Wait()
		close(f.exited)
	}()
	return nil
}

// waitReady waits until the cache server has a VM ready.
func (f *factoryRun) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(cacheReadyTimeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-f.exited:
			return fmt.Errorf("vm cache server exited: %s", f.server.ProcessState)
		default:
		}
		st, err := factory.CacheStatus(ctx, f.endpoint)
		if err == nil && len(st.GetReady()) > 0 {
			return nil
		}
		if err == nil && st.GetLastError() != "" {
			err = errors.New(st.GetLastError())
		}
		last = err
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	if last != nil {
		return fmt.Errorf("vm cache had no vm ready after %s: %w", cacheReadyTimeout, last)
	}
	return fmt.Errorf("vm cache had no vm ready after %s", cacheReadyTimeout)
}

// stop ends the cache server (SIGTERM, then SIGKILL to its group) and removes the template
// and its tmpfs with `vessel factory destroy`.
func (f *factoryRun) stop(ctx context.Context) {
	if f.server != nil {
		_ = f.server.Process.Signal(syscall.SIGTERM)
		select {
		case <-f.exited:
		case <-time.After(factoryStopTimeout):
			log.G(ctx).Warn("vm cache server ignored SIGTERM; killing its process group")
			_ = syscall.Kill(-f.server.Process.Pid, syscall.SIGKILL)
			<-f.exited
		}
		f.server = nil
	}
	if out, err := f.vesselOutput(ctx, "factory", "destroy"); err != nil {
		log.G(ctx).WithError(err).Warnf("vessel factory destroy: %s", strings.TrimSpace(string(out)))
	}
}
