package sandbox

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
	"github.com/vessel-containers/vessel/internal/config"
	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/oci"
	"github.com/vessel-containers/vessel/internal/sharefs/copyfs"
)

// copyReserveMiB of the guest's /run tmpfs half is left to the agent's own files
// (container state, resolv.conf, temporary parts of copies).
const copyReserveMiB = 16

// copies is a sandbox's copy mode (shared_fs = "none"): what its containers' copies take
// of the guest's copy tmpfs, and the watchers that keep their volumes in sync.
type copies struct {
	// budget is the size of the guest's copy tmpfs in bytes.
	budget int64
	// mode says which volumes are kept in sync.
	mode copyfs.SyncMode

	// mu guards used and watchers.
	mu sync.Mutex
	// used is what each container's copies take, by container id.
	used map[string]int64
	// watchers keep each container's synced volumes in sync, by container id.
	watchers map[string][]*copyfs.Watcher
}

// copySync is the sandbox's copy_sync setting ("" is the default, all).
func copySync(c *config.Config) copyfs.SyncMode {
	if c.Hypervisor.CopySync == "" {
		return copyfs.SyncAll
	}
	return copyfs.SyncMode(c.Hypervisor.CopySync)
}

// newCopies sets up copy mode for a VM of memMiB: the copies may take half of the guest's
// memory less copyReserveMiB, which is what a tmpfs takes by default.
func newCopies(c *config.Config, memMiB uint32) *copies {
	if memMiB == 0 {
		memMiB = config.DefaultMemoryMiB
	}
	budget := (int64(memMiB)/2 - copyReserveMiB) << 20
	return &copies{budget: max(budget, 0), mode: copySync(c), used: map[string]int64{}, watchers: map[string][]*copyfs.Watcher{}}
}

// copyStorage is the sandbox's storage in copy mode: the tmpfs the copies go to, sized to
// the budget, so the guest's memory bounds what later syncs add too.
func copyStorage(cp *copies) *agentv1.Storage {
	return &agentv1.Storage{
		Driver:     "ephemeral",
		Fstype:     "tmpfs",
		Source:     "vessel-copy",
		Options:    []string{"nodev", "mode=0755", fmt.Sprintf("size=%dk", cp.budget>>10)},
		MountPoint: copyfs.GuestRoot,
	}
}

// copyMode reports whether the sandbox copies files into the guest.
func (s *Sandbox) copyMode() bool { return s.copies != nil }

// copyItem is one tree of a container to copy: its root file system or a volume.
type copyItem struct {
	name string // name under the container's guest directory
	what string // for errors: "root file system ..." or "volume ..."
	tree *copyfs.Tree
	sync bool
}

// copyContainer copies the container's root file system and bind-mount sources into the
// guest and returns the guest spec with those paths rewritten to the copies. Everything is
// measured first: a container whose copies do not fit the guest's copy tmpfs is refused
// before anything is copied, naming the tree that does not fit. Volumes the sync mode
// chooses get a watcher; the rollback stops them and removes the copies.
func (s *Sandbox) copyContainer(ctx context.Context, plan *oci.Container, rollback *undo) (*specs.Spec, error) {
	guest, err := oci.GuestSpec(plan, s.cfg.Effective)
	if err != nil {
		return nil, err
	}
	id := plan.ID
	var items []copyItem
	if plan.RootfsDisk == nil {
		t, err := copyfs.Scan(plan.Rootfs)
		if err != nil {
			return nil, fmt.Errorf("container %s: copy mode: root file system: %w: %w", id, err, errdefs.ErrInvalidArgument)
		}
		items = append(items, copyItem{name: rootfsShare, what: "root file system " + plan.Rootfs, tree: t})
	}
	mountItem := map[int]int{} // guest.Mounts index -> items index
	for i, m := range guest.Mounts {
		if !oci.IsBind(m) {
			continue
		}
		t, err := copyfs.Scan(m.Source)
		if err != nil {
			return nil, fmt.Errorf("container %s: copy mode: mount %s: %w: %w", id, m.Destination, err, errdefs.ErrInvalidArgument)
		}
		mountItem[i] = len(items)
		items = append(items, copyItem{
			name: fmt.Sprintf("mount-%d", i), what: fmt.Sprintf("volume %s (mount %s)", m.Source, m.Destination),
			tree: t, sync: s.copies.mode.Synced(m.Source, t.Dir),
		})
	}
	if err := s.copies.reserve(id, items); err != nil {
		return nil, fmt.Errorf("container %s: %w", id, err)
	}
	rollback.add(func(ctx context.Context) error { return s.uncopyContainer(ctx, id) })

	// Watchers start before the copies (paused), so a change made while a volume is
	// copied is copied after it.
	watchers := make([]*copyfs.Watcher, len(items))
	for i, it := range items {
		if !it.sync {
			continue
		}
		w, err := copyfs.Watch(ctx, s.agent, it.tree.Root, copyfs.GuestPath(id, it.name))
		if err != nil {
			return nil, fmt.Errorf("container %s: copy mode: %s: %w", id, it.what, err)
		}
		watchers[i] = w
		s.copies.mu.Lock()
		s.copies.watchers[id] = append(s.copies.watchers[id], w)
		s.copies.mu.Unlock()
	}
	for i, it := range items {
		if err := copyfs.Copy(ctx, s.agent, it.tree, copyfs.GuestPath(id, it.name)); err != nil {
			return nil, s.explain(fmt.Errorf("container %s: copy mode: %s: %w", id, it.what, err))
		}
		if watchers[i] != nil {
			watchers[i].Resume()
		}
	}
	if plan.RootfsDisk == nil {
		guest.Root.Path = copyfs.GuestPath(id, rootfsShare)
	}
	for i := range guest.Mounts {
		if j, ok := mountItem[i]; ok {
			guest.Mounts[i].Source = copyfs.GuestPath(id, items[j].name)
		}
	}
	log.G(ctx).WithField("bytes", s.copies.usedBy(id)).Debug("copied the container's files into the guest")
	return guest, nil
}

// reserve takes what the container's items take from the budget, or refuses them naming
// the first one that does not fit.
func (cp *copies) reserve(id string, items []copyItem) error {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	var inUse int64
	for _, n := range cp.used {
		inUse += n
	}
	var total int64
	for _, it := range items {
		total += it.tree.Bytes
		if inUse+total > cp.budget {
			return fmt.Errorf("copy mode: %s takes %s in the guest's memory, but only %s of the %s the sandbox keeps for copies (half of the VM's memory, less %d MiB) are free (%s in use): use a shared file system (shared_fs) or more guest memory (default_memory): %w",
				it.what, mib(it.tree.Bytes), mib(max(cp.budget-inUse-(total-it.tree.Bytes), 0)), mib(cp.budget), copyReserveMiB, mib(inUse+total-it.tree.Bytes), errdefs.ErrInvalidArgument)
		}
	}
	cp.used[id] = total
	return nil
}

// usedBy is what the container's copies take.
func (cp *copies) usedBy(id string) int64 {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return cp.used[id]
}

// mib formats a byte count in MiB with one decimal.
func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// stopWatchers stops the watchers of one container ("" for all) and waits for them.
func (cp *copies) stopWatchers(id string) error {
	cp.mu.Lock()
	var ws []*copyfs.Watcher
	for cid, list := range cp.watchers {
		if id == "" || cid == id {
			ws = append(ws, list...)
			delete(cp.watchers, cid)
		}
	}
	cp.mu.Unlock()
	var errs []error
	for _, w := range ws {
		if err := w.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// uncopyContainer stops the container's watchers, removes its copies from the guest (when
// the VM still runs) and returns their room to the budget. Safe to call for a container
// with nothing copied, and in any mode.
func (s *Sandbox) uncopyContainer(ctx context.Context, id string) error {
	if !s.copyMode() {
		return nil
	}
	errs := []error{s.copies.stopWatchers(id)}
	if s.vmAlive() {
		if err := s.agent.RemovePath(ctx, copyfs.GuestPath(id, ""), true); err != nil {
			errs = append(errs, s.explain(fmt.Errorf("container %s: remove its copies from the guest: %w", id, err)))
		}
	}
	s.copies.mu.Lock()
	delete(s.copies.used, id)
	s.copies.mu.Unlock()
	return errors.Join(errs...)
}

// isCopyMode reports whether a VM configuration asks for copy mode.
func isCopyMode(vmcfg hypervisor.Config) bool { return vmcfg.SharedFS == hypervisor.SharedFSNone }
