package factory

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/vessel-containers/vessel/internal/agentclient"
	"github.com/vessel-containers/vessel/internal/atomicfile"
	"github.com/vessel-containers/vessel/internal/hypervisor"
)

// A template lives in one directory (factory.template_path), a tmpfs the factory mounts:
//
//	template.json      metadata (templateMeta), written last and atomically
//	memory-<suffix>    guest RAM, sparse: only what the template guest touched
//	state-<suffix>     device state (~0.5 MB)
//
// and a lock file beside the directory, ".<name>.lock": shared while a VM is restored
// (QEMU opens the files), exclusive while a template is built or destroyed. A rebuild
// writes files with a new suffix and then removes the old ones: VMs restored from the old
// template keep their private mapping of the unlinked file, which is never rewritten.

const (
	metaName    = "template.json"
	metaVersion = 1
	// tmpfsExtraMiB is room on the template tmpfs beyond guest RAM, for device state.
	tmpfsExtraMiB = 64
	// templateFileMode is the mode of a saved template's memory and state files.
	templateFileMode = 0o444
)

// errNoTemplate wraps errdefs.ErrNotFound: nothing is built yet.
var errNoTemplate = fmt.Errorf("no template: %w", errdefs.ErrNotFound)

// templateMeta is template.json.
type templateMeta struct {
	Version int       `json:"version"`
	Created time.Time `json:"created"`
	Driver  string    `json:"driver"`
	Hash    string    `json:"hash"`
	Key     Key       `json:"key"`
	Shape   Shape     `json:"shape"`
	// Config is the template VM's configuration without its identity; a restored VM
	// gets exactly this, with its own id, state dir and shared dir.
	Config      hypervisor.Config `json:"config"`
	MemoryFile  string            `json:"memory_file"`
	MemorySize  int64             `json:"memory_size"`
	StateFile   string            `json:"state_file"`
	StateSize   int64             `json:"state_size"`
	StateSHA256 string            `json:"state_sha256"`
	// BootTime is how long the template VM took until its agent answered.
	BootTime time.Duration `json:"boot_time"`
}

// templateStore builds, verifies, restores and removes the template in dir.
type templateStore struct {
	dir      string
	driver   string
	base     hypervisor.Config
	timeouts agentclient.Timeouts
}

func (t *templateStore) lockPath() string {
	return filepath.Join(filepath.Dir(t.dir), "."+filepath.Base(t.dir)+".lock")
}

func (t *templateStore) lock(ctx context.Context, exclusive bool) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(t.dir), 0o711); err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	return lockFile(ctx, t.lockPath(), exclusive)
}

// load reads and verifies template.json and the files it names. A missing template is
// errNoTemplate; anything else wrong is a corrupt template.
// Preconditions: the template lock is held (shared or exclusive).
func (t *templateStore) load() (*templateMeta, error) {
	b, err := os.ReadFile(filepath.Join(t.dir, metaName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, errNoTemplate
	}
	if err != nil {
		return nil, fmt.Errorf("read template metadata: %w", err)
	}
	var m templateMeta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("corrupt template metadata %s: %w", filepath.Join(t.dir, metaName), err)
	}
	if m.Version != metaVersion {
		return nil, fmt.Errorf("template metadata version %d, want %d", m.Version, metaVersion)
	}
	if err := t.verify(&m); err != nil {
		return nil, err
	}
	return &m, nil
}

// verify checks the template's files against its metadata: the memory file's size and
// the device state's digest (memory is too big to hash on every restore).
func (t *templateStore) verify(m *templateMeta) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("corrupt template in %s: "+format, append([]any{t.dir}, args...)...)
	}
	if !validFileName(m.MemoryFile) || !validFileName(m.StateFile) {
		return bad("bad file names %q, %q", m.MemoryFile, m.StateFile)
	}
	st, err := os.Stat(filepath.Join(t.dir, m.MemoryFile))
	if err != nil {
		return bad("%v", err)
	}
	if st.Size() != m.MemorySize {
		return bad("memory file is %d bytes, want %d", st.Size(), m.MemorySize)
	}
	sum, size, err := fileSHA256(filepath.Join(t.dir, m.StateFile))
	if err != nil {
		return bad("%v", err)
	}
	if size != m.StateSize || sum != m.StateSHA256 {
		return bad("device state does not match its digest (%d bytes, want %d)", size, m.StateSize)
	}
	return nil
}

func validFileName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, "/\x00")
}

func fileSHA256(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

func randomSuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// build boots a template VM from the base configuration, waits for its agent, saves it
// and records it, replacing any previous template.
// Preconditions: the template lock is held exclusively.
func (t *templateStore) build(ctx context.Context) (_ *templateMeta, retErr error) {
	logger := log.G(ctx).WithField("template", t.dir)
	if err := os.MkdirAll(t.dir, 0o700); err != nil {
		return nil, fmt.Errorf("build template: %w", err)
	}
	if _, err := mountTmpfs(t.dir, 2*uint64(t.base.MemoryMiB)+tmpfsExtraMiB); err != nil {
		return nil, fmt.Errorf("build template: %w", err)
	}
	suffix := randomSuffix()
	memFile, stateFile := "memory-"+suffix, "state-"+suffix
	defer func() {
		if retErr != nil {
			_ = os.Remove(filepath.Join(t.dir, memFile))
			_ = os.Remove(filepath.Join(t.dir, stateFile))
		}
	}()
	vmDir := filepath.Join(t.dir, "vm-"+suffix)
	if err := os.MkdirAll(filepath.Join(vmDir, "shared"), 0o700); err != nil {
		return nil, fmt.Errorf("build template: %w", err)
	}
	defer os.RemoveAll(vmDir)

	cfg := t.base
	cfg.ID, cfg.StateDir, cfg.SharedDir = "template-"+suffix, vmDir, filepath.Join(vmDir, "shared")
	cfg.Template = &hypervisor.Template{
		Mode:       hypervisor.TemplateSave,
		MemoryPath: filepath.Join(t.dir, memFile),
		StatePath:  filepath.Join(t.dir, stateFile),
	}
	begin := time.Now()
	vm, err := hypervisor.New(t.driver, cfg)
	if err != nil {
		return nil, fmt.Errorf("build template: %w", err)
	}
	saver, ok := vm.(hypervisor.TemplateSaver)
	if !ok {
		return nil, fmt.Errorf("build template: driver %s cannot save templates: %w", t.driver, errdefs.ErrNotImplemented)
	}
	if err := vm.Start(ctx); err != nil {
		return nil, fmt.Errorf("build template: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := vm.Stop(sctx); err != nil {
			logger.WithError(err).Warn("stop template vm")
		}
	}()
	if err := waitAgent(ctx, vm, t.timeouts); err != nil {
		return nil, fmt.Errorf("build template: %w", err)
	}
	bootTime := time.Since(begin)
	if err := saver.SaveTemplate(ctx); err != nil {
		return nil, fmt.Errorf("build template: %w", err)
	}
	if err := vm.Stop(ctx); err != nil {
		return nil, fmt.Errorf("build template: stop template vm: %w", err)
	}
	// No process writes a template after it is saved: read-only for everyone, owned by
	// the builder (root). docs/factory.md says what this does and does not enforce.
	for _, p := range []string{cfg.Template.MemoryPath, cfg.Template.StatePath} {
		if err := os.Chmod(p, templateFileMode); err != nil {
			return nil, fmt.Errorf("build template: %w", err)
		}
	}

	m := &templateMeta{
		Version: metaVersion, Created: time.Now().UTC(), Driver: t.driver,
		Key: KeyOf(t.driver, t.base, nil), Shape: ShapeOf(t.base), Config: identityless(t.base),
		MemoryFile: memFile, StateFile: stateFile, BootTime: bootTime,
	}
	m.Hash = m.Key.Hash()
	st, err := os.Stat(cfg.Template.MemoryPath)
	if err != nil {
		return nil, fmt.Errorf("build template: %w", err)
	}
	m.MemorySize = st.Size()
	if m.StateSHA256, m.StateSize, err = fileSHA256(cfg.Template.StatePath); err != nil {
		return nil, fmt.Errorf("build template: %w", err)
	}
	if err := writeJSON(filepath.Join(t.dir, metaName), m); err != nil {
		return nil, fmt.Errorf("build template: %w", err)
	}
	t.removeUnreferenced(ctx, m)
	logger.WithField("hash", m.Hash).WithField("boot", bootTime).
		WithField("elapsed", time.Since(begin)).WithField("memory_touched", allocatedBytes(cfg.Template.MemoryPath)).
		Info("template built")
	return m, nil
}

// removeUnreferenced removes the files of earlier templates and of builds that died.
// VMs restored from them keep their mappings.
func (t *templateStore) removeUnreferenced(ctx context.Context, m *templateMeta) {
	entries, err := os.ReadDir(t.dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		name := e.Name()
		if name == metaName || name == m.MemoryFile || name == m.StateFile {
			continue
		}
		if err := os.RemoveAll(filepath.Join(t.dir, name)); err != nil {
			log.G(ctx).WithError(err).Warn("remove old template file")
		}
	}
}

// identityless is cfg without what belongs to one VM.
func identityless(cfg hypervisor.Config) hypervisor.Config {
	cfg.ID, cfg.StateDir, cfg.SharedDir, cfg.VirtioFSSocket = "", "", "", ""
	cfg.Template, cfg.Adopt, cfg.Handover = nil, nil, false
	return cfg
}

// restore starts a VM from the template for want (its id, state dir, shared dir and
// handover flag; the rest comes from the template).
// Preconditions: the template lock is held (until Start returns QEMU has the files open).
func (t *templateStore) restore(ctx context.Context, m *templateMeta, want hypervisor.Config) (hypervisor.VM, error) {
	cfg := m.Config
	cfg.ID, cfg.StateDir, cfg.SharedDir, cfg.Handover = want.ID, want.StateDir, want.SharedDir, want.Handover
	cfg.UserNS = want.UserNS // the template was saved by a VMM as root; a clone may run unprivileged
	cfg.Template = &hypervisor.Template{
		Mode:       hypervisor.TemplateRestore,
		MemoryPath: filepath.Join(t.dir, m.MemoryFile),
		StatePath:  filepath.Join(t.dir, m.StateFile),
	}
	vm, err := hypervisor.New(m.Driver, cfg)
	if err != nil {
		return nil, fmt.Errorf("restore template: %w", err)
	}
	if err := vm.Start(ctx); err != nil {
		return nil, fmt.Errorf("restore template: %w", err)
	}
	return vm, nil
}

// destroy removes the template, unmounts its tmpfs and removes the directory and lock.
// Preconditions: the template lock is held exclusively.
func (t *templateStore) destroy() error {
	var errs []error
	if err := unmount(t.dir); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(t.dir); err != nil {
		errs = append(errs, fmt.Errorf("remove template: %w", err))
	}
	if err := os.Remove(t.lockPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("remove template lock: %w", err))
	}
	return errors.Join(errs...)
}

// waitAgent dials the VM's agent until it answers once, then hangs up: the next host
// connection starts a new session in the guest.
func waitAgent(ctx context.Context, vm hypervisor.VM, timeouts agentclient.Timeouts) error {
	return withAgent(ctx, vm, timeouts, nil)
}

// warmAgent waits for the VM's agent as waitAgent does, then has it run a throwaway
// container (agent WarmUp) so that the VM's first real container finds the guest's code
// paths hot: under TCG they are translated on first use. An agent without WarmUp (older
// guest image) is only logged.
func warmAgent(ctx context.Context, vm hypervisor.VM, timeouts agentclient.Timeouts) error {
	return withAgent(ctx, vm, timeouts, func(agent *agentclient.Client) error {
		begin := time.Now()
		err := agent.WarmUp(ctx)
		if errdefs.IsNotImplemented(err) {
			log.G(ctx).WithError(err).Warn("agent cannot warm up; rebuild the guest image")
			return nil
		}
		if err != nil {
			return fmt.Errorf("warm up: %w", err)
		}
		log.G(ctx).WithField("elapsed", time.Since(begin)).Debug("vm warmed up")
		return nil
	})
}

// withAgent dials the VM's agent, waits for its first answer, runs then (if set) and hangs
// up. A VM that exited meanwhile is named in the error.
func withAgent(ctx context.Context, vm hypervisor.VM, timeouts agentclient.Timeouts, then func(*agentclient.Client) error) error {
	agent, err := agentclient.Dial(ctx, vm.Agent(), timeouts)
	if err != nil {
		return err
	}
	defer agent.Close()
	_, err = agent.WaitReady(ctx)
	if err != nil {
		err = fmt.Errorf("wait for agent: %w", err)
	} else if then != nil {
		err = then(agent)
	}
	if err != nil {
		select {
		case <-vm.Done():
			return fmt.Errorf("%w: vm exited: %w", err, vm.Err())
		default:
		}
	}
	return err
}

// writeJSON writes v to path atomically.
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, b, 0o600)
}
