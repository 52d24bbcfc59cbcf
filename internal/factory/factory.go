// Package factory takes the VM boot off a sandbox's critical path. It hands the sandbox
// orchestrator a VM that is already up, from one of two sources, configured by the
// [factory] section:
//
//   - a template (enable_template): a VM booted once with its agent up, paused and saved
//     (guest RAM in a file on tmpfs, device state in another, see template.go). A new VM
//     maps the RAM copy-on-write and loads the device state: ~0.1 s instead of a boot, and
//     the pages the template touched are shared by every VM restored from it.
//   - a VM cache (vm_cache_number > 0): a server (`vessel factory init --cache N`, see
//     server.go) keeps N VMs booted, from the template when there is one, and hands them
//     to shims over ttrpc (api/factory/v1). The shim takes over the VMM process, its
//     sockets, logs and shared directory.
//
// The sandbox then reconnects the agent (the guest sees a new host connection and starts
// a new session), resyncs the guest clock, reseeds the guest RNG (two VMs from one
// template must not share RNG state), grows the VM to the sandbox's size (CPU and memory
// hotplug) and sets the hostname in CreateSandbox, as for a cold boot.
//
// A VM fits a sandbox when the configuration key (key.go) is equal, the sandbox is not
// smaller than the VM and the VM can grow to the sandbox's size. Anything else, and any
// factory failure, is a log line and a cold boot: the factory never fails a sandbox.
//
// Limits on this host: the driver must report Templating in its registered capabilities
// (hypervisor.CapabilitiesOf; its VMs implement TemplateSaver, Detacher and Resizer);
// templates need an initramfs guest and virtio-9p (QEMU 7.2 cannot migrate vhost-user-fs,
// so no virtio-fs and no DAX); the cache's directory and the sandbox state directories
// must be on one file system (a cached VM's files are renamed into the sandbox's
// directory).
package factory

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/vessel-containers/vessel/internal/agentclient"
	"github.com/vessel-containers/vessel/internal/config"
	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/idrange"
	"github.com/vessel-containers/vessel/internal/oci"
	"github.com/vessel-containers/vessel/internal/sharefs"
)

// lockPoll is how often a waiter retries a busy template lock.
const lockPoll = 20 * time.Millisecond

// Config configures a Factory.
type Config struct {
	// Driver is the hypervisor driver of every VM the factory makes.
	Driver string
	// Base is the configuration templates and cached VMs boot with: the configured
	// defaults, sized to default_vcpus and default_memory and able to grow to the host's
	// limits. Identity fields (ID, StateDir, SharedDir) are ignored.
	Base hypervisor.Config
	// TemplatePath is the template's directory; empty disables templating.
	TemplatePath string
	// CacheEndpoint is the VM cache server's socket; empty disables the cache.
	CacheEndpoint string
	// Timeouts bound the agent's first answer in template and cached VMs.
	Timeouts agentclient.Timeouts
	// VMMIDs, when set (hypervisor.vmm_id_range), makes cached VMs run unprivileged: each
	// leases a slot in VMMIDLeaseDir (idrange.DefaultLeaseDir when empty) when it boots,
	// and the lease goes to the sandbox that takes the VM.
	VMMIDs        *idrange.Pool
	VMMIDLeaseDir string
}

// Factory hands out VMs from its template and cache. It is safe for concurrent use, and
// across processes (the template is guarded by a file lock).
type Factory struct {
	cfg Config
	tpl *templateStore
}

// New returns a factory for cfg. It starts nothing.
func New(cfg Config) *Factory {
	cfg.Base.ShareTag = sharefs.Tag
	if cfg.Base.SharedFS == "" || cfg.Base.SharedFS == hypervisor.SharedFSNone {
		cfg.Base.SharedFS = hypervisor.SharedFS9P // as sandbox.Create does
	}
	f := &Factory{cfg: cfg}
	if cfg.TemplatePath != "" {
		f.tpl = &templateStore{dir: cfg.TemplatePath, driver: cfg.Driver, base: identityless(cfg.Base), timeouts: cfg.Timeouts}
	}
	return f
}

// FromConfig is the factory the [factory] section asks for, or nil when it asks for
// neither a template nor a cache, or when what it asks for cannot work with the rest of
// the configuration (logged). Base is built from the configuration's defaults, without
// any pod's annotations.
func FromConfig(ctx context.Context, c *config.Config, host config.Host) *Factory {
	fc := c.Factory
	tpl, cacheOn := fc.EnableTemplate, fc.VMCacheNumber > 0
	if !tpl && !cacheOn {
		return nil
	}
	h := &c.Hypervisor
	if reason := driverUnsupported(h.Driver); reason != "" {
		log.G(ctx).WithField("driver", h.Driver).Warnf("factory: %s; booting cold", reason)
		return nil
	}
	if tpl {
		if reason := TemplateUnsupported(h); reason != "" {
			log.G(ctx).Warnf("factory: templating disabled: %s", reason)
			tpl = false
		}
	}
	if cacheOn && h.SharedFS == hypervisor.SharedFSVirtioFS {
		log.G(ctx).Warn("factory: vm cache disabled: a cached VM's shared directory must be a plain 9p export, not virtio-fs")
		cacheOn = false
	}
	if cacheOn && h.SharedFS == hypervisor.SharedFSNone {
		log.G(ctx).Warn("factory: vm cache disabled: a cached VM has a 9p device, and copy mode (shared_fs none) runs VMs without one")
		cacheOn = false
	}
	if !tpl && !cacheOn {
		return nil
	}
	return New(ConfigFor(c, host, tpl, cacheOn))
}

// Admin is a factory for the admin verbs (vessel factory init, status, destroy): it has
// the configured template path and cache endpoint whether or not they are enabled.
func Admin(c *config.Config, host config.Host) *Factory {
	return New(ConfigFor(c, host, true, true))
}

// ConfigFor is the factory configuration for c on host, with templating and the cache on
// or off as given (FromConfig decides from the [factory] section).
func ConfigFor(c *config.Config, host config.Host, tpl, cacheOn bool) Config {
	cfg := Config{
		Driver:   c.Hypervisor.Driver,
		Base:     oci.HypervisorConfig(c, oci.ComputeSizing(c.Limits(host))),
		Timeouts: agentclient.Timeouts{Ready: c.Agent.DialTimeoutDuration(), Request: c.Agent.RequestTimeoutDuration()},
	}
	if tpl {
		cfg.TemplatePath = c.Factory.TemplatePath
	}
	if cacheOn {
		cfg.CacheEndpoint = c.Factory.VMCacheEndpoint
	}
	if p, err := idrange.ParsePool(c.Hypervisor.VMMIDRange); err == nil { // validated with the file
		cfg.VMMIDs = &p
	}
	return cfg
}

// driverUnsupported says why the named driver cannot serve templates and the VM cache,
// or is empty when it can: its registered capabilities include Templating.
func driverUnsupported(driver string) string {
	caps, err := hypervisor.CapabilitiesOf(driver)
	switch {
	case err != nil:
		return err.Error()
	case !caps.Templating:
		return fmt.Sprintf("driver %s cannot boot VMs from templates or hand them over (no templating capability)", driver)
	}
	return ""
}

// TemplateUnsupported says why the hypervisor section cannot be templated, or "".
func TemplateUnsupported(h *config.Hypervisor) string {
	switch {
	case h.Initrd == "" || h.Image != "":
		return "templates need an initramfs guest (hypervisor.initrd), not a disk image"
	case h.SharedFS == hypervisor.SharedFSVirtioFS:
		return "templates need virtio-9p: QEMU 7.2 cannot migrate vhost-user-fs (virtio-fs)"
	case h.SharedFS == hypervisor.SharedFSNone:
		return "templates need virtio-9p: a template's VM has a 9p device, and copy mode (shared_fs none) runs VMs without one"
	case h.VirtioFSCacheSize > 0:
		return "templates cannot have a virtio-fs DAX window"
	case h.EnableHugepages:
		return "template memory lives on tmpfs, not hugetlbfs"
	}
	return ""
}

// VM returns a started VM for a sandbox that would boot cold with want (its ID, StateDir
// and SharedDir are the sandbox's): from the cache, else from the template. The VM has
// the factory's size (hypervisor.Resizer grows it) and its agent is up but has no
// sandbox yet. The error says why no VM fits; the caller then boots cold.
func (f *Factory) VM(ctx context.Context, driver string, want hypervisor.Config) (hypervisor.VM, error) {
	if driver != f.cfg.Driver {
		return nil, fmt.Errorf("factory serves driver %s, the sandbox uses %s: %w", f.cfg.Driver, driver, errdefs.ErrNotFound)
	}
	if want.SharedFS == hypervisor.SharedFSNone {
		return nil, fmt.Errorf("the sandbox uses copy mode (shared_fs none), whose VM has no shared file system device, which the factory's VMs have: %w", errdefs.ErrNotImplemented)
	}
	key := KeyOf(driver, want, nil)
	var errs []error
	if f.cfg.CacheEndpoint != "" {
		vm, err := f.fromCache(ctx, withUserNS(key, want.UserNS != nil), want)
		if err == nil {
			return vm, nil
		}
		errs = append(errs, fmt.Errorf("vm cache: %w", err))
	}
	if f.tpl != nil {
		vm, err := f.fromTemplate(ctx, key, want)
		if err == nil {
			return vm, nil
		}
		errs = append(errs, fmt.Errorf("template: %w", err))
	}
	if len(errs) == 0 {
		return nil, fmt.Errorf("factory has neither a template nor a cache: %w", errdefs.ErrNotFound)
	}
	return nil, errors.Join(errs...)
}

// baseKey is the key of the configuration templates are built from, now.
func (f *Factory) baseKey() Key { return KeyOf(f.cfg.Driver, f.cfg.Base, nil) }

// cacheKey is the key of the cache's VMs, now: baseKey, naming an unprivileged VMM with
// VMMIDs.
func (f *Factory) cacheKey() Key { return withUserNS(f.baseKey(), f.cfg.VMMIDs != nil) }

// leaseDir is where the VMM id leases are kept.
func (f *Factory) leaseDir() string {
	if f.cfg.VMMIDLeaseDir != "" {
		return f.cfg.VMMIDLeaseDir
	}
	return idrange.DefaultLeaseDir
}

// fromTemplate restores a VM from the template. A missing, corrupt or stale template (built
// from another base configuration, e.g. before the guest image was rebuilt) is rebuilt
// first; so is one that fails to restore, once.
func (f *Factory) fromTemplate(ctx context.Context, key Key, want hypervisor.Config) (hypervisor.VM, error) {
	if want.SharedFS == hypervisor.SharedFSVirtioFS {
		return nil, fmt.Errorf("the sandbox uses virtio-fs, which QEMU 7.2 cannot restore: %w", errdefs.ErrNotImplemented)
	}
	var failed string // state digest of a template that failed to restore
	for attempt := 0; ; attempt++ {
		unlock, err := f.tpl.lock(ctx, false)
		if err != nil {
			return nil, err
		}
		m, err := f.tpl.load()
		var problem string
		switch {
		case err != nil:
			problem = err.Error()
		case m.Hash != f.baseKey().Hash():
			problem = "stale: built for a configuration that differs from the current one in " + joinNames(m.Key.Diff(f.baseKey()))
		case m.Hash != key.Hash():
			unlock()
			return nil, fmt.Errorf("the sandbox's VM configuration differs from the template's in %s: %w", joinNames(key.Diff(m.Key)), errdefs.ErrNotFound)
		case m.StateSHA256 == failed:
			problem = "it failed to restore"
		default:
			if err := m.Shape.Fits(want.VCPUs, want.MemoryMiB); err != nil {
				unlock()
				return nil, fmt.Errorf("%w: %w", err, errdefs.ErrNotFound)
			}
			begin := time.Now()
			vm, err := f.tpl.restore(ctx, m, want)
			if err == nil {
				unlock()
				log.G(ctx).WithField("elapsed", time.Since(begin)).Debug("vm restored from template")
				return vm, nil
			}
			failed = m.StateSHA256
			problem = "restore failed: " + err.Error()
		}
		unlock()
		if attempt > 0 {
			return nil, fmt.Errorf("template unusable after a rebuild: %s", problem)
		}
		if !errors.Is(err, errNoTemplate) {
			log.G(ctx).WithField("problem", problem).Warn("factory: template unusable; rebuilding it")
		}
		if err := f.rebuild(ctx, failed); err != nil {
			return nil, err
		}
	}
}

// rebuild builds the template unless, by the time it holds the lock, another process has
// built a usable one (not the one whose state digest is failed).
func (f *Factory) rebuild(ctx context.Context, failed string) error {
	unlock, err := f.tpl.lock(ctx, true)
	if err != nil {
		return err
	}
	defer unlock()
	if m, err := f.tpl.load(); err == nil && m.Hash == f.baseKey().Hash() && m.StateSHA256 != failed {
		return nil
	}
	_, err = f.tpl.build(ctx)
	return err
}

// BuildTemplate builds (or rebuilds) the template now.
func (f *Factory) BuildTemplate(ctx context.Context) error {
	if f.tpl == nil {
		return fmt.Errorf("templating is not enabled (factory.enable_template): %w", errdefs.ErrFailedPrecondition)
	}
	unlock, err := f.tpl.lock(ctx, true)
	if err != nil {
		return err
	}
	defer unlock()
	_, err = f.tpl.build(ctx)
	return err
}

// DestroyTemplate removes the template, its tmpfs and its lock file. VMs restored from it
// keep running (they hold private mappings of its memory).
func (f *Factory) DestroyTemplate(ctx context.Context) error {
	if f.tpl == nil {
		return nil
	}
	if _, err := os.Stat(f.tpl.dir); errors.Is(err, os.ErrNotExist) {
		return f.tpl.destroy() // a lock file may be left
	}
	unlock, err := f.tpl.lock(ctx, true)
	if err != nil {
		return err
	}
	defer unlock()
	return f.tpl.destroy()
}

// bootForCache boots a VM for the cache in dir: from the template when there is one, else
// cold; its VMM outlives the cache (Handover) so that a shim can take it over.
func (f *Factory) bootForCache(ctx context.Context, id, dir string) (hypervisor.VM, bool, error) {
	want := f.cfg.Base
	want.ID, want.StateDir, want.SharedDir, want.Handover = id, dir, filepath.Join(dir, "shared"), true
	if f.cfg.VMMIDs != nil {
		if err := f.jailCacheVM(ctx, dir, &want); err != nil {
			return nil, false, err
		}
	}
	var vm hypervisor.VM
	fromTemplate := false
	if f.tpl != nil {
		var err error
		if vm, err = f.fromTemplate(ctx, f.baseKey(), want); err == nil {
			fromTemplate = true
		} else {
			log.G(ctx).WithError(err).Warn("vm cache: no vm from the template; booting cold")
		}
	}
	if vm == nil {
		var err error
		if vm, err = hypervisor.New(f.cfg.Driver, want); err != nil {
			return nil, false, err
		}
		if err := vm.Start(ctx); err != nil {
			return nil, false, err
		}
	}
	stop := func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
		defer cancel()
		_ = vm.Stop(sctx)
	}
	if err := writeVMRecord(dir, vm); err != nil {
		stop()
		return nil, false, err
	}
	if err := warmAgent(ctx, vm, f.cfg.Timeouts); err != nil {
		stop()
		return nil, false, err
	}
	return vm, fromTemplate, nil
}

func joinNames(names []string) string { return strings.Join(names, ", ") }

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
