// Package idrange hands out per-sandbox ranges of unprivileged host uids and gids for
// the VMM's user namespace. A pool is one configured span of host ids ("START-END",
// hypervisor.vmm_id_range); it is cut into slots of Size ids, and a sandbox holds one slot
// while it exists, so no two sandboxes' VMMs share a host uid. In a slot, namespace id N
// is host id Start+N, for uids and gids alike.
//
// A slot is held by a file named after its index in the pool's lease directory, created
// with O_EXCL and holding the owner's sandbox directory. Release removes it. A lease
// whose sandbox directory is gone (a shim killed before it could release) is taken over
// by the next Allocate.
package idrange

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
)

// Size is how many ids a slot holds: a full 16-bit id space, so that images with any of
// the usual uids and gids (nobody is 65534) keep their owners.
const Size = 1 << 16

// MinStart is the lowest host id a pool may start at: ids below it belong to the host's
// own users and system accounts.
const MinStart = Size

// Pool is a span of host ids, Start to End inclusive.
type Pool struct {
	Start, End uint32
}

// ParsePool reads "START-END". The span starts at MinStart or above and holds at least
// one slot.
func ParsePool(s string) (Pool, error) {
	a, b, ok := strings.Cut(s, "-")
	start, err1 := strconv.ParseUint(strings.TrimSpace(a), 10, 32)
	end, err2 := strconv.ParseUint(strings.TrimSpace(b), 10, 32)
	switch {
	case !ok || err1 != nil || err2 != nil:
		return Pool{}, fmt.Errorf("%q: want START-END (host ids)", s)
	case start < MinStart:
		return Pool{}, fmt.Errorf("%q: starts below %d, among the host's own ids", s, MinStart)
	case end < start || end-start+1 < Size:
		return Pool{}, fmt.Errorf("%q: holds fewer than %d ids, one sandbox's share", s, Size)
	}
	return Pool{Start: uint32(start), End: uint32(end)}, nil
}

// String is the pool in the form ParsePool reads.
func (p Pool) String() string { return fmt.Sprintf("%d-%d", p.Start, p.End) }

// Slots is how many sandboxes the pool serves at once.
func (p Pool) Slots() int { return int((uint64(p.End) - uint64(p.Start) + 1) / Size) }

// Range is one slot: namespace ids 0 to Size-1 are host ids Start to Start+Size-1.
type Range struct {
	Start uint32 `json:"start"`
	Size  uint32 `json:"size"`
}

// HostID is the host id of namespace id n.
func (r Range) HostID(n uint32) uint32 { return r.Start + n }

// MountOptions are the options that make containerd's mount package present a mount
// idmapped into r (uidmap=/gidmap=, for overlay its lower layers).
func (r Range) MountOptions() []string {
	m := fmt.Sprintf("0:%d:%d", r.Start, r.Size)
	return []string{"uidmap=" + m, "gidmap=" + m}
}

// DefaultLeaseDir holds the leases of every pool on the host: one directory, so that
// sandboxes under different state roots never share ids.
const DefaultLeaseDir = "/run/vessel/vmm-ids"

// Lease is a held slot: Range, leased from Pool in Dir for the directory Owner.
type Lease struct {
	Dir   string `json:"dir"`
	Pool  Pool   `json:"pool"`
	Range Range  `json:"range"`
	Owner string `json:"owner"`
}

// Allocate leases a free slot of p in dir (created 0700 if missing) for owner, an
// existing directory (the sandbox's): the lease records it with its identity, and a lease
// whose directory is gone or replaced is free again. A lease file is named after the
// first host id of its slot, so pools configured differently (by another shim, or before
// a configuration change) never hand out overlapping ids: a slot that overlaps a live
// lease of any pool is skipped. It fails with ErrUnavailable when every slot is held.
func Allocate(dir string, p Pool, owner string) (Lease, error) {
	tag, err := ownerTag(owner)
	if err != nil {
		return Lease{}, fmt.Errorf("id range lease: %w", err)
	}
	// Parents it creates are host root's alone: the VMM and virtiofsd on the leased ids
	// get their paths below them as clones (jail.PassRoot) and need no access.
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return Lease{}, fmt.Errorf("id range leases: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Lease{}, fmt.Errorf("id range leases: %w", err)
	}
	held, err := liveLeases(dir)
	if err != nil {
		return Lease{}, err
	}
	for i := 0; i < p.Slots(); i++ {
		start := p.Start + uint32(i)*Size
		if overlaps(held, start) {
			continue
		}
		lease := filepath.Join(dir, strconv.FormatUint(uint64(start), 10))
		for attempt := 0; attempt < 2; attempt++ {
			err := create(lease, tag)
			if err == nil {
				return Lease{Dir: dir, Pool: p, Range: Range{Start: start, Size: Size}, Owner: tag}, nil
			}
			if !errors.Is(err, os.ErrExist) {
				return Lease{}, fmt.Errorf("id range lease %s: %w", lease, err)
			}
			if !stale(lease) {
				break
			}
			// The holder is gone; remove its lease and try once more (another
			// allocator may win the race, then the next slot is tried).
			_ = os.Remove(lease)
		}
	}
	return Lease{}, fmt.Errorf("vmm id range %s: all %d slots of %d ids are held by sandboxes: %w", p, p.Slots(), Size, errdefs.ErrUnavailable)
}

// liveLeases are the first ids of the slots leased in dir whose holders still exist.
func liveLeases(dir string) ([]uint32, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("id range leases: %w", err)
	}
	var out []uint32
	for _, e := range ents {
		start, err := strconv.ParseUint(e.Name(), 10, 32)
		if err != nil || stale(filepath.Join(dir, e.Name())) {
			continue
		}
		out = append(out, uint32(start))
	}
	return out, nil
}

// overlaps reports whether the slot from start overlaps another held slot (the slot
// that starts at start itself is left to the O_EXCL create).
func overlaps(held []uint32, start uint32) bool {
	for _, h := range held {
		if h != start && uint64(h) < uint64(start)+Size && uint64(start) < uint64(h)+Size {
			return true
		}
	}
	return false
}

// Release gives the slot back, if the lease still holds it.
func (l Lease) Release() error {
	lease := filepath.Join(l.Dir, strconv.FormatUint(uint64(l.Range.Start), 10))
	if l.Range.Size != Size {
		return fmt.Errorf("id range %d+%d is not a slot", l.Range.Start, l.Range.Size)
	}
	b, err := os.ReadFile(lease)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("id range lease: %w", err)
	}
	if string(b) != l.Owner {
		return nil // taken over after its holder's directory was gone
	}
	if err := os.Remove(lease); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("id range lease: %w", err)
	}
	return nil
}

// ownerTag is what a lease file holds: the owner directory's identity and path.
func ownerTag(owner string) (string, error) {
	id, err := identity(owner)
	if err != nil {
		return "", err
	}
	return id + " " + owner, nil
}

func create(lease, tag string) error {
	f, err := os.OpenFile(lease, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.WriteString(tag)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(lease)
	}
	return err
}

// stale reports a lease whose owner directory no longer exists or is another directory
// now (a lease being written, still empty, is not stale).
func stale(lease string) bool {
	b, err := os.ReadFile(lease)
	if err != nil || len(b) == 0 {
		return false
	}
	id, owner, ok := strings.Cut(string(b), " ")
	if !ok {
		return true
	}
	now, err := identity(owner)
	if errors.Is(err, os.ErrNotExist) {
		return true
	}
	return err == nil && now != id
}

// Transfer gives the lease of slot r in dir from the directory from to the directory to
// (a VM booted by the VM cache, handed over to a sandbox): the lease file must name from
// as its holder, and is replaced atomically by one naming to. The returned lease is to's.
// Call it while from still exists: a lease whose holder is gone is free for the taking.
func Transfer(dir string, p Pool, r Range, from, to string) (Lease, error) {
	if r.Size != Size {
		return Lease{}, fmt.Errorf("id range %d+%d is not a slot", r.Start, r.Size)
	}
	fromTag, err := ownerTag(from)
	if err != nil {
		return Lease{}, fmt.Errorf("id range lease: %w", err)
	}
	toTag, err := ownerTag(to)
	if err != nil {
		return Lease{}, fmt.Errorf("id range lease: %w", err)
	}
	lease := filepath.Join(dir, strconv.FormatUint(uint64(r.Start), 10))
	b, err := os.ReadFile(lease)
	if err != nil {
		return Lease{}, fmt.Errorf("id range lease: %w", err)
	}
	if string(b) != fromTag {
		return Lease{}, fmt.Errorf("id range lease %s is held by %q, not %s", lease, b, from)
	}
	tmp := lease + ".transfer"
	if err := create(tmp, toTag); err != nil {
		return Lease{}, fmt.Errorf("id range lease: %w", err)
	}
	if err := os.Rename(tmp, lease); err != nil {
		_ = os.Remove(tmp)
		return Lease{}, fmt.Errorf("id range lease: %w", err)
	}
	return Lease{Dir: dir, Pool: p, Range: r, Owner: toTag}, nil
}

// ReleaseOwner gives back every slot in dir that the directory owner holds (owner must
// still exist: the lease names it by identity).
func ReleaseOwner(dir, owner string) error {
	tag, err := ownerTag(owner)
	if err != nil {
		return fmt.Errorf("id range lease: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("id range leases: %w", err)
	}
	var errs []error
	for _, e := range ents {
		start, err := strconv.ParseUint(e.Name(), 10, 32)
		if err != nil {
			continue
		}
		l := Lease{Dir: dir, Range: Range{Start: uint32(start), Size: Size}, Owner: tag}
		errs = append(errs, l.Release())
	}
	return errors.Join(errs...)
}
