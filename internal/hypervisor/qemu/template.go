package qemu

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/containerd/errdefs"

	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/hypervisor/qemu/qmp"
)

// VM templates (hypervisor.Template), the QEMU way:
//
//   - TemplateSave: guest RAM is a memory-backend-file with share=on, so every page the
//     guest touches lands in Template.MemoryPath (on tmpfs). SaveTemplate stops the vCPUs,
//     opens StatePath itself, passes the descriptor over QMP (getfd) and migrates to
//     "fd:<name>" with the x-ignore-shared capability: shared file-backed RAM is skipped,
//     so the state file holds only devices and CPUs (~0.5 MB).
//   - TemplateRestore: the same command line, but RAM maps the same file with share=off
//     (MAP_PRIVATE: pages are shared with the page cache until the guest writes them) and
//     QEMU starts with "-incoming defer"; Start opens StatePath read-only, passes it the
//     same way and loads it with migrate-incoming "fd:<name>", then resumes the vCPUs
//     (the stream records the template as paused).
//
// Neither direction makes QEMU run a program (no "exec:" URI), so both work under a
// seccomp filter that denies spawning, and QEMU never opens the state file by name.
//
// What is not in the state and so belongs to the new VM: its name, sockets, console log
// and the 9p export path (-fsdev path= is read from the command line; the template guest
// never mounted the export, which would also block migration). QEMU 7.2 cannot open the
// memory file read-only for a private writable mapping (memory-backend-file's "rom"
// property arrived in 8.2; "readonly=on" there makes guest RAM read-only), so there the
// file is opened read-write: MAP_PRIVATE never writes it back, and the factory replaces a
// template by writing new files, never by rewriting the mapped ones; an unprivileged VMM
// (Config.UserNS) is refused. From QEMU 8.2 (found with -version, restoreReadOnly) a
// restore opens it with readonly=on,rom=off. What this does and does not enforce is in
// docs/factory.md ("Who can change a template").

// migrationPoll is how often Start and SaveTemplate poll a migration in progress.
const migrationPoll = 5 * time.Millisecond

// templateMode is cfg's template mode, 0 when it boots cold.
func templateMode(cfg *hypervisor.Config) hypervisor.TemplateMode {
	if cfg.Template == nil {
		return 0
	}
	return cfg.Template.Mode
}

// templateRAM is the -object for guest RAM of a template or a VM restored from one, or ""
// for a cold boot. The machine takes it with memory-backend=idRAM. readOnly (QEMU 8.2 and
// newer) opens a restored VM's file read-only, its guest RAM still writable
// (readonly=on,rom=off: a private copy of each page the guest writes).
func templateRAM(cfg *hypervisor.Config, readOnly bool) string {
	share := "on"
	switch templateMode(cfg) {
	case hypervisor.TemplateSave:
	case hypervisor.TemplateRestore:
		share = "off"
		if readOnly {
			share += ",readonly=on,rom=off"
		}
	default:
		return ""
	}
	return fmt.Sprintf("memory-backend-file,id=%s,size=%dM,mem-path=%s,share=%s",
		idRAM, cfg.MemoryMiB, optPath(cfg.Template.MemoryPath), share)
}

// restoreReadOnly tells whether the QEMU at binary restores cfg's template from a
// read-only memory file; with an unprivileged VMM (cfg.UserNS) an older QEMU is refused.
func restoreReadOnly(cfg *hypervisor.Config, binary string) (bool, error) {
	if templateMode(cfg) != hypervisor.TemplateRestore {
		return false, nil
	}
	v, err := binaryVersion(binary) // version.go
	if err != nil {
		return false, err
	}
	if cfg.UserNS != nil {
		if err := unprivilegedTemplates(binary, v); err != nil {
			return false, err
		}
	}
	return v.atLeast(readOnlyRAMVersion), nil
}

// freePageReporting is the balloon's free-page-reporting setting: off for templates and
// VMs restored from them. QEMU 7.2 discards reported pages of file-backed RAM with
// fallocate(PUNCH_HOLE) even when the mapping is private, which would zero pages of the
// shared template file under every other VM restored from it (seen here: clones hung).
// The setting must be equal on both sides of a migration. QEMU 8.2 no longer punches
// holes for private mappings.
func freePageReporting(cfg *hypervisor.Config) string {
	if templateMode(cfg) != 0 {
		return "off"
	}
	return "on"
}

// templateArgs are the arguments a template mode adds after the devices.
func templateArgs(cfg *hypervisor.Config) []string {
	if templateMode(cfg) == hypervisor.TemplateRestore {
		return []string{"-incoming", "defer"}
	}
	return nil
}

// checkTemplate validates cfg.Template before anything starts.
func checkTemplate(cfg *hypervisor.Config) error {
	t := cfg.Template
	if t == nil {
		return nil
	}
	if t.Mode != hypervisor.TemplateSave && t.Mode != hypervisor.TemplateRestore {
		return fmt.Errorf("template mode %d: want save or restore: %w", t.Mode, errdefs.ErrInvalidArgument)
	}
	if !strings.HasPrefix(t.MemoryPath, "/") || !strings.HasPrefix(t.StatePath, "/") {
		return fmt.Errorf("template paths %q and %q must be absolute: %w", t.MemoryPath, t.StatePath, errdefs.ErrInvalidArgument)
	}
	if cfg.SharedFS == hypervisor.SharedFSVirtioFS {
		return fmt.Errorf("templates need virtio-9p or no shared fs: QEMU 7.2 cannot migrate vhost-user-fs: %w", errdefs.ErrNotImplemented)
	}
	if len(cfg.NICs) > 0 {
		return fmt.Errorf("templates carry no network devices (a VM from a template gets none at boot): %w", errdefs.ErrNotImplemented)
	}
	if t.Mode == hypervisor.TemplateRestore {
		if err := checkFile("template memory", t.MemoryPath, false); err != nil {
			return err
		}
		if err := checkFile("template state", t.StatePath, false); err != nil {
			return err
		}
	}
	return nil
}

// migrationFD is the name under which the driver passes QEMU the template state file
// (QMP getfd) for an "fd:" migration URI.
const migrationFD = "vessel-template-state"

// passStateFile opens the template state file (for writing with write set, else read-only)
// and hands its descriptor to QEMU as migrationFD; it returns the migration URI.
func passStateFile(ctx context.Context, c *qmp.Client, path string, write bool) (string, error) {
	flags := os.O_RDONLY
	if write {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, 0o600)
	if err != nil {
		return "", fmt.Errorf("template state: %w", err)
	}
	defer f.Close() // QEMU holds its own copy
	if err := c.GetFD(ctx, migrationFD, f); err != nil {
		return "", fmt.Errorf("pass template state %s to qemu: %w", path, err)
	}
	return "fd:" + migrationFD, nil
}

// SaveTemplate stops the vCPUs and writes device state to Template.StatePath. The VM stays
// paused; the caller stops it once the template files are recorded.
func (v *VM) SaveTemplate(ctx context.Context) error {
	if templateMode(&v.cfg) != hypervisor.TemplateSave {
		return fmt.Errorf("qemu %s: save template: vm was not booted as a template: %w", v.cfg.ID, errdefs.ErrFailedPrecondition)
	}
	v.opMu.Lock()
	defer v.opMu.Unlock()
	c, err := v.running("save template", phaseRunning, phasePaused)
	if err != nil {
		return err
	}
	if err := c.Stop(ctx); err != nil {
		return fmt.Errorf("qemu %s: save template: pause: %w", v.cfg.ID, err)
	}
	v.setPhase(phasePaused)
	if err := c.MigrateSetCapability(ctx, "x-ignore-shared", true); err != nil {
		return fmt.Errorf("qemu %s: save template: %w", v.cfg.ID, err)
	}
	uri, err := passStateFile(ctx, c, v.cfg.Template.StatePath, true)
	if err != nil {
		return fmt.Errorf("qemu %s: save template: %w", v.cfg.ID, err)
	}
	if err := c.Migrate(ctx, uri); err != nil {
		return fmt.Errorf("qemu %s: save template: %w", v.cfg.ID, err)
	}
	poll := time.NewTicker(migrationPoll)
	defer poll.Stop()
	for {
		m, err := c.QueryMigrate(ctx)
		if err != nil {
			return fmt.Errorf("qemu %s: save template: %w", v.cfg.ID, err)
		}
		switch m.Status {
		case "completed":
			return nil
		case "failed", "cancelled":
			return fmt.Errorf("qemu %s: save template: migration %s: %s", v.cfg.ID, m.Status, m.ErrorDesc)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("qemu %s: save template: %w", v.cfg.ID, context.Cause(ctx))
		case <-poll.C:
		}
	}
}

// restore loads a template's device state into a QEMU started with "-incoming defer" and
// resumes it. If the state does not load, QEMU exits and ctx (Start's) is cancelled.
func (v *VM) restore(ctx context.Context, c *qmp.Client) (qmp.Status, error) {
	if err := c.MigrateSetCapability(ctx, "x-ignore-shared", true); err != nil {
		return qmp.Status{}, fmt.Errorf("restore template: %w", err)
	}
	uri, err := passStateFile(ctx, c, v.cfg.Template.StatePath, false)
	if err != nil {
		return qmp.Status{}, fmt.Errorf("restore template: %w", err)
	}
	if err := c.MigrateIncoming(ctx, uri); err != nil {
		return qmp.Status{}, fmt.Errorf("restore template: %w", err)
	}
	poll := time.NewTicker(migrationPoll)
	defer poll.Stop()
	for {
		st, err := c.QueryStatus(ctx)
		if err != nil {
			return st, fmt.Errorf("restore template: %w", err)
		}
		switch st.Status {
		case "inmigrate", "prelaunch":
		case "paused", "postmigrate", "finish-migrate":
			// The template was saved paused; its state says so.
			if err := c.Cont(ctx); err != nil {
				return st, fmt.Errorf("restore template: resume: %w", err)
			}
		default:
			return st, nil
		}
		select {
		case <-ctx.Done():
			return st, fmt.Errorf("restore template: %w", context.Cause(ctx))
		case <-poll.C:
		}
	}
}
