package factory

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	factoryv1 "github.com/vessel-containers/vessel/api/factory/v1"
	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/procid"
)

// The VM cache keeps `target` VMs booted, each in a directory of its own under dir
// (sockets, logs, "shared" for the 9p export, and vm.json naming the process), and hands
// them out. An entry belongs to whoever removes it from the ready list: take (hands it
// over), its watcher (it died) or close (shutdown). Directories still in dir when a cache
// starts belong to a cache that crashed: their VMs are killed and the directories removed.
// Handed-out VMs are not in dir any more (the taker moved their files), so a restarted
// cache never touches a sandbox's VM.

const (
	vmRecordName = "vm.json"
	// maxBackoff bounds the wait between failed boots.
	maxBackoff = 30 * time.Second
	// stopTimeout bounds stopping one cached VM.
	stopTimeout = 10 * time.Second
)

// bootFunc boots one VM with identity id in dir (which exists and holds an empty
// "shared"), records it with writeVMRecord once its process runs, and returns when its
// agent has answered once (the connection is closed again).
type bootFunc func(ctx context.Context, id, dir string) (vm hypervisor.VM, fromTemplate bool, err error)

// cachedVM is one VM of the cache.
type cachedVM struct {
	id           string
	dir          string
	vm           hypervisor.VM
	fromTemplate bool
	readyAt      time.Time
	// gone is closed when the entry leaves the ready list through take; it stops the
	// entry's watcher.
	gone chan struct{}
}

// cacheConfig configures a cache.
type cacheConfig struct {
	dir    string
	target int
	// key is the configuration key the VMs boot with; currentKey, when set, recomputes
	// it (the guest image or QEMU may be replaced while the cache runs).
	key        Key
	currentKey func() Key
	shape      Shape
	boot       bootFunc
	// remove removes the directory of a VM that is not handed out, once its VM is stopped
	// (Factory.releaseVMDir: also its shared view and id lease); os.RemoveAll when nil.
	remove func(ctx context.Context, dir string) error
}

// removeDir removes a VM's directory with cfg.remove.
func (c cacheConfig) removeDir(ctx context.Context, dir string) error {
	if c.remove == nil {
		return os.RemoveAll(dir)
	}
	return c.remove(ctx, dir)
}

// cache is the VM cache. Its goroutines: the refill loop, and one watcher per ready VM;
// close stops them all.
type cache struct {
	cfg cacheConfig

	// wake asks the refill loop to look again (capacity 1, never blocks).
	wake chan struct{}
	// closed is closed by close: it stops the watchers.
	closed   chan struct{}
	cancel   context.CancelFunc
	loopDone chan struct{}
	watchers sync.WaitGroup
	// closeOnce makes close idempotent.
	closeOnce sync.Once

	// mu guards key, hash, generation, ready, booting, handedOut, discarded, bootFailures
	// and lastErr.
	mu   sync.Mutex
	key  Key
	hash string
	// generation counts key changes: a VM whose boot began in an older generation is
	// stale when it is ready.
	generation   int
	ready        []*cachedVM
	booting      int
	handedOut    uint64
	discarded    uint64
	bootFailures uint64
	lastErr      string
}

// newCache removes what a crashed cache left in cfg.dir and starts the refill loop, which
// runs until close.
func newCache(ctx context.Context, cfg cacheConfig) (*cache, error) {
	// 0700: a jailed VMM gets its export as a clone (jail.PassRoot), not by path.
	if err := os.MkdirAll(cfg.dir, 0o700); err != nil {
		return nil, fmt.Errorf("vm cache: %w", err)
	}
	removeLeftovers(ctx, cfg)
	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c := &cache{
		cfg: cfg, key: cfg.key, hash: cfg.key.Hash(),
		wake: make(chan struct{}, 1), closed: make(chan struct{}),
		cancel: cancel, loopDone: make(chan struct{}),
	}
	go c.loop(lctx)
	return c, nil
}

// removeLeftovers kills the VMs recorded in dir's subdirectories and removes them.
func removeLeftovers(ctx context.Context, cfg cacheConfig) {
	dir := cfg.dir
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		sub := filepath.Join(dir, e.Name())
		var rec procid.ID // vm.json: enough to kill a VM left behind by a crashed cache
		if b, err := os.ReadFile(filepath.Join(sub, vmRecordName)); err == nil && json.Unmarshal(b, &rec) == nil {
			if err := killProcess(rec); err != nil {
				log.G(ctx).WithError(err).Warn("kill vm left by an earlier cache")
			}
		}
		if err := cfg.removeDir(ctx, sub); err != nil {
			log.G(ctx).WithError(err).Warn("remove vm left by an earlier cache")
		} else {
			log.G(ctx).WithField("dir", sub).Info("removed a vm left by an earlier cache")
		}
	}
}

// writeVMRecord writes vm.json for a started VM into dir.
func writeVMRecord(dir string, vm hypervisor.VM) error {
	rec, err := procid.Of(vm.Pid())
	if err != nil {
		return fmt.Errorf("record cached vm: %w", err)
	}
	return writeJSON(filepath.Join(dir, vmRecordName), rec)
}

func (c *cache) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// loop boots VMs one at a time until target are ready, then waits to be woken. A failed
// boot is retried after a growing pause.
func (c *cache) loop(ctx context.Context) {
	defer close(c.loopDone)
	backoff := time.Second
	for {
		c.mu.Lock()
		need := len(c.ready)+c.booting < c.cfg.target
		if need {
			c.booting++
		}
		c.mu.Unlock()
		if !need {
			select {
			case <-ctx.Done():
				return
			case <-c.wake:
				continue
			}
		}
		err := c.bootOne(ctx)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			backoff = time.Second
			continue
		}
		log.G(ctx).WithError(err).WithField("retry_in", backoff).Warn("vm cache: boot failed")
		if sleepCtx(ctx, backoff) != nil {
			return
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// bootOne boots a VM and adds it to the ready list.
// Preconditions: c.booting counts this boot.
func (c *cache) bootOne(ctx context.Context) error {
	c.mu.Lock()
	gen := c.generation
	c.mu.Unlock()
	id := "cache-" + randomSuffix()
	dir := filepath.Join(c.cfg.dir, id)
	err := os.MkdirAll(filepath.Join(dir, "shared"), 0o700)
	var vm hypervisor.VM
	var fromTemplate bool
	if err == nil {
		vm, fromTemplate, err = c.cfg.boot(ctx, id, dir)
	}
	c.mu.Lock()
	c.booting--
	if err != nil {
		c.bootFailures++
		c.lastErr = err.Error()
	}
	c.mu.Unlock()
	if err != nil {
		if rerr := c.cfg.removeDir(ctx, dir); rerr != nil {
			log.G(ctx).WithError(rerr).WithField("dir", dir).Warn("vm cache: remove the directory of a failed boot")
		}
		return err
	}
	e := &cachedVM{id: id, dir: dir, vm: vm, fromTemplate: fromTemplate, readyAt: time.Now(), gone: make(chan struct{})}
	c.mu.Lock()
	stale := gen != c.generation
	if !stale {
		c.ready = append(c.ready, e)
	}
	c.mu.Unlock()
	if stale {
		c.dispose(ctx, e, "stale: the configuration changed while it booted")
		return nil
	}
	c.watchers.Add(1)
	go c.watch(ctx, e)
	log.G(ctx).WithField("vm", id).WithField("pid", vm.Pid()).WithField("from_template", fromTemplate).Info("vm cache: vm ready")
	return nil
}

// watch discards e when its VM dies while it waits in the ready list. It returns when
// the VM exits, is taken, or the cache closes.
func (c *cache) watch(ctx context.Context, e *cachedVM) {
	defer c.watchers.Done()
	select {
	case <-e.vm.Done():
		if c.unready(e) {
			c.dispose(ctx, e, fmt.Sprintf("vm exited: %v", e.vm.Err()))
		}
	case <-e.gone:
	case <-c.closed:
	}
}

// unready removes e from the ready list; false if it was not there (someone owns it).
func (c *cache) unready(e *cachedVM) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, r := range c.ready {
		if r == e {
			c.ready = append(c.ready[:i], c.ready[i+1:]...)
			return true
		}
	}
	return false
}

// dispose stops a VM that will not be handed out, removes its directory and asks for a
// replacement.
// Preconditions: the caller owns e (removed it from the ready list).
func (c *cache) dispose(ctx context.Context, e *cachedVM, reason string) {
	log.G(ctx).WithField("vm", e.id).WithField("reason", reason).Warn("vm cache: discarding vm")
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
	defer cancel()
	_ = e.vm.Stop(sctx)
	if err := c.cfg.removeDir(sctx, e.dir); err != nil {
		log.G(ctx).WithError(err).WithField("vm", e.id).Warn("vm cache: remove a discarded vm's directory")
	}
	c.mu.Lock()
	c.discarded++
	c.mu.Unlock()
	c.poke()
}

// take hands the first healthy ready VM over: it checks the request against the cache's
// configuration, detaches the VM and removes its record. The caller moves the VM's
// directory away and adopts the process.
func (c *cache) take(ctx context.Context, req *factoryv1.GetVMRequest) (*cachedVM, hypervisor.Adoption, error) {
	c.mu.Lock()
	key, hash := c.key, c.hash
	c.mu.Unlock()
	if req.GetConfigHash() != hash {
		if c.refresh(ctx) {
			return nil, hypervisor.Adoption{}, fmt.Errorf("the cache's vms were stale and are being replaced: %w", errdefs.ErrNotFound)
		}
		why := "configuration " + req.GetConfigHash()
		if k := keyFromProto(req.GetKey()); len(k) > 0 {
			why = "a configuration that differs in " + strings.Join(key.Diff(k), ", ")
		}
		return nil, hypervisor.Adoption{}, fmt.Errorf("the cache's VMs have configuration %s, the sandbox needs %s: %w", hash, why, errdefs.ErrFailedPrecondition)
	}
	if err := c.cfg.shape.Fits(req.GetVcpus(), req.GetMemoryMib()); err != nil {
		return nil, hypervisor.Adoption{}, fmt.Errorf("%w: %w", err, errdefs.ErrFailedPrecondition)
	}
	for {
		c.mu.Lock()
		if len(c.ready) == 0 {
			booting := c.booting
			c.mu.Unlock()
			return nil, hypervisor.Adoption{}, fmt.Errorf("no vm ready (%d booting): %w", booting, errdefs.ErrNotFound)
		}
		e := c.ready[0]
		c.ready = c.ready[1:]
		c.mu.Unlock()
		close(e.gone)
		c.poke()

		ad, err := handOver(ctx, e)
		if err != nil {
			c.dispose(ctx, e, err.Error())
			continue
		}
		c.mu.Lock()
		c.handedOut++
		c.mu.Unlock()
		log.G(ctx).WithField("vm", e.id).WithField("sandbox", req.GetSandboxId()).Info("vm cache: vm handed out")
		return e, ad, nil
	}
}

// refresh recomputes the configuration key. When it changed (the guest image was
// rebuilt, QEMU upgraded), the ready VMs are stale: they are discarded and the cache
// refills with VMs of the new key. It reports whether the key changed.
func (c *cache) refresh(ctx context.Context) bool {
	if c.cfg.currentKey == nil {
		return false
	}
	k := c.cfg.currentKey()
	c.mu.Lock()
	if k.Hash() == c.hash {
		c.mu.Unlock()
		return false
	}
	why := "stale: the configuration changed in " + strings.Join(c.key.Diff(k), ", ")
	c.key, c.hash = k, k.Hash()
	c.generation++
	stale := c.ready
	c.ready = nil
	c.mu.Unlock()
	for _, e := range stale {
		close(e.gone)
		c.dispose(ctx, e, why)
	}
	c.poke()
	return true
}

// handOver checks that e's VM still runs and detaches it.
func handOver(ctx context.Context, e *cachedVM) (hypervisor.Adoption, error) {
	select {
	case <-e.vm.Done():
		return hypervisor.Adoption{}, fmt.Errorf("vm exited: %w", e.vm.Err())
	default:
	}
	st, err := e.vm.State(ctx)
	if err != nil {
		return hypervisor.Adoption{}, fmt.Errorf("query vm: %w", err)
	}
	if st != hypervisor.StateRunning {
		return hypervisor.Adoption{}, fmt.Errorf("vm is %s, want running", st)
	}
	d, ok := e.vm.(hypervisor.Detacher)
	if !ok {
		return hypervisor.Adoption{}, fmt.Errorf("vm cannot be handed over: %w", errdefs.ErrNotImplemented)
	}
	ad, err := d.Detach(ctx)
	if err != nil {
		return hypervisor.Adoption{}, err
	}
	if err := os.Remove(filepath.Join(e.dir, vmRecordName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return hypervisor.Adoption{}, fmt.Errorf("remove vm record: %w", err)
	}
	return ad, nil
}

// status describes the cache.
func (c *cache) status() *factoryv1.StatusResponse {
	c.mu.Lock()
	defer c.mu.Unlock()
	resp := &factoryv1.StatusResponse{
		Pid: int32(os.Getpid()), ConfigHash: c.hash, Target: uint32(c.cfg.target),
		Booting: uint32(c.booting), HandedOut: c.handedOut, Discarded: c.discarded,
		BootFailures: c.bootFailures, LastError: c.lastErr, Shape: shapeToProto(c.cfg.shape),
	}
	for _, e := range c.ready {
		resp.Ready = append(resp.Ready, &factoryv1.CachedVM{
			VmId: e.id, Pid: int32(e.vm.Pid()), FromTemplate: e.fromTemplate, ReadyUnixNano: e.readyAt.UnixNano(),
		})
	}
	return resp
}

// close stops the refill loop and the watchers, stops every ready VM and removes their
// directories (and dir, when empty). VMs already handed out are not touched. Only the
// first call does anything.
func (c *cache) close(ctx context.Context) {
	c.closeOnce.Do(func() { c.shutdown(ctx) })
}

func (c *cache) shutdown(ctx context.Context) {
	c.cancel()
	<-c.loopDone
	close(c.closed)
	c.watchers.Wait()
	c.mu.Lock()
	ready := c.ready
	c.ready = nil
	c.mu.Unlock()
	for _, e := range ready {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
		_ = e.vm.Stop(sctx)
		if err := c.cfg.removeDir(sctx, e.dir); err != nil {
			log.G(ctx).WithError(err).WithField("vm", e.id).Warn("vm cache: remove a vm's directory at shutdown")
		}
		cancel()
	}
	_ = os.Remove(c.cfg.dir)
}

func shapeToProto(s Shape) *factoryv1.VMShape {
	return &factoryv1.VMShape{Vcpus: s.VCPUs, MaxVcpus: s.MaxVCPUs, MemoryMib: s.MemoryMiB, MaxMemoryMib: s.MaxMemoryMiB, MemorySlots: s.MemorySlots}
}

func shapeFromProto(p *factoryv1.VMShape) Shape {
	return Shape{VCPUs: p.GetVcpus(), MaxVCPUs: p.GetMaxVcpus(), MemoryMiB: p.GetMemoryMib(), MaxMemoryMiB: p.GetMaxMemoryMib(), MemorySlots: p.GetMemorySlots()}
}

func keyToProto(k Key) []*factoryv1.KeyField {
	out := make([]*factoryv1.KeyField, 0, len(k))
	for _, f := range k {
		out = append(out, &factoryv1.KeyField{Name: f.Name, Value: f.Value})
	}
	return out
}

func keyFromProto(p []*factoryv1.KeyField) Key {
	k := make(Key, 0, len(p))
	for _, f := range p {
		k = append(k, Field{Name: f.GetName(), Value: f.GetValue()})
	}
	return k
}
