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

// copies is a sandbox's copy mode (shared_fs = "none"): what the copies take of the
// guest's copy tmpfs, and the volumes copied in. A volume is copied once per host source
// and shared by the containers that mount it, as a shared file system shares it: two
// containers of a pod with one emptyDir see each other's writes (in the guest).
type copies struct {
	// budget is the size of the guest's copy tmpfs in bytes.
	budget int64
	// mode says which volumes are kept in sync.
	mode copyfs.SyncMode

	// op serializes copyContainer and uncopyContainer: a volume two containers share is
	// copied by the first and removed by the last.
	op sync.Mutex

	// mu guards the fields below; it is held only briefly (never across an agent call).
	mu sync.Mutex
	// rootfs is what each container's root file system copy takes, by container id.
	rootfs map[string]int64
	// volumes are the volumes copied in, by host source (symlinks resolved).
	volumes map[string]*copiedVolume
	// next numbers the next volume copied in (copyfs.GuestVolume).
	next uint64
}

// copiedVolume is one host source copied into the guest.
type copiedVolume struct {
	guest string
	bytes int64
	// users are the containers that mount it.
	users map[string]bool
	// watcher keeps it in sync; nil when the sync mode leaves it alone.
	watcher *copyfs.Watcher
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
	return &copies{budget: max(budget, 0), mode: copySync(c), rootfs: map[string]int64{}, volumes: map[string]*copiedVolume{}}
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
	what string // for errors: "root file system ..." or "volume ..."
	tree *copyfs.Tree
	// rootfs marks the root file system; otherwise the item is a volume.
	rootfs bool
	// guest is where the tree is (or goes) in the guest; set by copyContainer.
	guest string
	// copied is set for a volume another container already copied in.
	copied bool
}

// copyContainer copies the container's root file system and bind-mount sources into the
// guest and returns the guest spec with those paths rewritten to the copies. Everything is
// measured first: a container whose copies do not fit the guest's copy tmpfs is refused
// before anything is copied, naming the tree that does not fit. A volume already copied
// for another container is shared, not copied again. Volumes the sync mode chooses get a
// watcher; the rollback stops them and removes the copies.
func (s *Sandbox) copyContainer(ctx context.Context, plan *oci.Container, rollback *undo) (*specs.Spec, error) {
	guest, err := oci.GuestSpec(plan, s.cfg.Effective)
	if err != nil {
		return nil, err
	}
	id := plan.ID
	var items []*copyItem
	if plan.RootfsDisk == nil {
		t, err := copyfs.Scan(plan.Rootfs)
		if err != nil {
			return nil, fmt.Errorf("container %s: copy mode: root file system: %w: %w", id, err, errdefs.ErrInvalidArgument)
		}
		items = append(items, &copyItem{what: "root file system " + plan.Rootfs, tree: t, rootfs: true, guest: copyfs.GuestRootfs(id)})
	}
	mountItem := map[int]*copyItem{} // by index in guest.Mounts
	for i, m := range guest.Mounts {
		if _, mem := plan.MemoryVolume(i); mem || !oci.IsBind(m) || oci.IsGuestKernelBind(m) {
			continue
		}
		t, err := copyfs.Scan(m.Source)
		if err != nil {
			return nil, fmt.Errorf("container %s: copy mode: mount %s: %w: %w", id, m.Destination, err, errdefs.ErrInvalidArgument)
		}
		it := &copyItem{what: fmt.Sprintf("volume %s (mount %s)", m.Source, m.Destination), tree: t}
		mountItem[i] = it
		items = append(items, it)
	}

	cp := s.copies
	cp.op.Lock()
	defer cp.op.Unlock()
	fresh, err := cp.reserve(id, items)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", id, err)
	}
	rollback.add(func(ctx context.Context) error { return s.uncopyContainer(ctx, id) })

	// Watchers start before the copies (paused), so a change made while a volume is
	// copied is copied after it.
	for _, it := range fresh {
		if it.rootfs || !cp.mode.Synced(it.tree.Root, it.tree.Dir) {
			continue
		}
		w, err := copyfs.Watch(ctx, s.agent, it.tree.Root, it.guest)
		if err != nil {
			return nil, fmt.Errorf("container %s: copy mode: %s: %w", id, it.what, err)
		}
		cp.mu.Lock()
		cp.volumes[it.tree.Root].watcher = w
		cp.mu.Unlock()
	}
	for _, it := range fresh {
		if err := copyfs.Copy(ctx, s.agent, it.tree, it.guest); err != nil {
			return nil, s.explain(fmt.Errorf("container %s: copy mode: %s: %w", id, it.what, err))
		}
		if !it.rootfs {
			cp.mu.Lock()
			w := cp.volumes[it.tree.Root].watcher
			cp.mu.Unlock()
			if w != nil {
				w.Resume()
			}
		}
	}
	if plan.RootfsDisk == nil {
		guest.Root.Path = copyfs.GuestRootfs(id)
	}
	for i, it := range mountItem {
		guest.Mounts[i].Source = it.guest
	}
	log.G(ctx).WithField("copied", len(fresh)).WithField("shared", len(items)-len(fresh)).Debug("copied the container's files into the guest")
	return guest, nil
}

// reserve registers the container's items: a volume already copied in gets the
// container as one more user; the rest take their room from the budget and get their guest
// paths. It returns the items to copy, or refuses them all, naming the first that does not
// fit.
//
// Preconditions: cp.op is held.
func (cp *copies) reserve(id string, items []*copyItem) ([]*copyItem, error) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	inUse := cp.usedLocked()
	var total int64
	var fresh []*copyItem
	newSources := map[string]bool{}
	for _, it := range items {
		if !it.rootfs {
			if v, ok := cp.volumes[it.tree.Root]; ok {
				it.guest, it.copied = v.guest, true
				continue
			}
			if newSources[it.tree.Root] { // the same source twice in one container
				it.copied = true
				continue
			}
			newSources[it.tree.Root] = true
		}
		total += it.tree.Bytes
		if inUse+total > cp.budget {
			return nil, fmt.Errorf("copy mode: %s takes %s in the guest's memory, but only %s of the %s the sandbox keeps for copies (half of the VM's memory, less %d MiB) are free (%s in use): use a shared file system (shared_fs) or more guest memory (default_memory): %w",
				it.what, mib(it.tree.Bytes), mib(max(cp.budget-inUse-(total-it.tree.Bytes), 0)), mib(cp.budget), copyReserveMiB, mib(inUse+total-it.tree.Bytes), errdefs.ErrInvalidArgument)
		}
		fresh = append(fresh, it)
	}
	for _, it := range fresh {
		if it.rootfs {
			cp.rootfs[id] = it.tree.Bytes
			continue
		}
		it.guest = copyfs.GuestVolume(cp.next)
		cp.next++
		cp.volumes[it.tree.Root] = &copiedVolume{guest: it.guest, bytes: it.tree.Bytes, users: map[string]bool{}}
	}
	for _, it := range items {
		if !it.rootfs {
			v := cp.volumes[it.tree.Root]
			v.users[id] = true
			it.guest = v.guest
		}
	}
	return fresh, nil
}

// usedLocked is what the copies take.
//
// Preconditions: cp.mu is held.
func (cp *copies) usedLocked() int64 {
	var n int64
	for _, b := range cp.rootfs {
		n += b
	}
	for _, v := range cp.volumes {
		n += v.bytes
	}
	return n
}

// used is what the copies take.
func (cp *copies) used() int64 {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return cp.usedLocked()
}

// release drops the container: its root file system, and the volumes it was the last user
// of, which it returns.
//
// Preconditions: cp.op is held.
func (cp *copies) release(id string) (rootfs bool, gone []*copiedVolume) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	_, rootfs = cp.rootfs[id]
	delete(cp.rootfs, id)
	for src, v := range cp.volumes {
		if !v.users[id] {
			continue
		}
		delete(v.users, id)
		if len(v.users) == 0 {
			delete(cp.volumes, src)
			gone = append(gone, v)
		}
	}
	return rootfs, gone
}

// mib formats a byte count in MiB with one decimal.
func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// uncopyContainer removes the container's copies: its root file system, and each volume
// it was the last user of (its watcher stopped first), from the guest when the VM still
// runs; their room returns to the budget. Safe to call for a container with nothing
// copied, and in any mode.
func (s *Sandbox) uncopyContainer(ctx context.Context, id string) error {
	if !s.copyMode() {
		return nil
	}
	cp := s.copies
	cp.op.Lock()
	defer cp.op.Unlock()
	rootfs, gone := cp.release(id)
	var errs []error
	var remove []string
	if rootfs {
		remove = append(remove, copyfs.GuestContainerDir(id))
	}
	for _, v := range gone {
		if v.watcher != nil {
			if err := v.watcher.Close(); err != nil {
				errs = append(errs, err)
			}
		}
		remove = append(remove, v.guest)
	}
	if s.vmAlive() {
		for _, p := range remove {
			if err := s.agent.RemovePath(ctx, p, true); err != nil {
				errs = append(errs, s.explain(fmt.Errorf("container %s: remove its copy %s from the guest: %w", id, p, err)))
			}
		}
	}
	return errors.Join(errs...)
}

// stopCopyWatchers stops every watcher of the sandbox and waits for them, before the VM
// and the agent connection go.
func (s *Sandbox) stopCopyWatchers() error {
	cp := s.copies
	cp.op.Lock()
	defer cp.op.Unlock()
	cp.mu.Lock()
	var ws []*copyfs.Watcher
	for _, v := range cp.volumes {
		if v.watcher != nil {
			ws = append(ws, v.watcher)
			v.watcher = nil
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

// isCopyMode reports whether a VM configuration asks for copy mode.
func isCopyMode(vmcfg hypervisor.Config) bool { return vmcfg.SharedFS == hypervisor.SharedFSNone }
