package idrange

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"
)

func TestParsePool(t *testing.T) {
	for _, bad := range []string{"", "100000", "a-b", "1000-200000", "200000-100000", "200000-265534"} {
		if _, err := ParsePool(bad); err == nil {
			t.Errorf("ParsePool(%q) accepted", bad)
		}
	}
	p, err := ParsePool("200000-396607")
	if err != nil {
		t.Fatal(err)
	}
	if p.Slots() != 3 || p.String() != "200000-396607" {
		t.Errorf("pool %v: %d slots", p, p.Slots())
	}
}

func TestAllocateRelease(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "leases")
	p := Pool{Start: 1 << 20, End: 1<<20 + 2*Size - 1}
	owners := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	la, err := Allocate(dir, p, owners[0])
	if err != nil {
		t.Fatal(err)
	}
	lb, err := Allocate(dir, p, owners[1])
	if err != nil {
		t.Fatal(err)
	}
	a, b := la.Range, lb.Range
	if a.Start == b.Start || a.Size != Size || b.Start != a.Start+Size {
		t.Fatalf("slots %v and %v", a, b)
	}
	if a.HostID(0) != 1<<20 || a.HostID(65534) != 1<<20+65534 {
		t.Errorf("host ids of %v", a)
	}
	if _, err := Allocate(dir, p, owners[2]); !errdefs.IsUnavailable(err) {
		t.Fatalf("third allocation from a two-slot pool: %v", err)
	}
	// A release by a lease that does not hold the slot changes nothing.
	other := la
	other.Owner = "1 " + owners[2]
	if err := other.Release(); err != nil {
		t.Fatal(err)
	}
	if _, err := Allocate(dir, p, owners[2]); !errdefs.IsUnavailable(err) {
		t.Fatalf("a slot was freed by a release from a non-holder: %v", err)
	}
	if err := la.Release(); err != nil {
		t.Fatal(err)
	}
	lc, err := Allocate(dir, p, owners[2])
	if err != nil || lc.Range != a {
		t.Fatalf("after release: %v, %v; want %v", lc, err, a)
	}
	// A holder whose sandbox directory is gone, or replaced by another directory of the
	// same name, loses its slot to the next allocation.
	if err := os.Remove(owners[1]); err != nil {
		t.Fatal(err)
	}
	ld, err := Allocate(dir, p, owners[0])
	if err != nil || ld.Range != b {
		t.Fatalf("stale lease not taken over: %v, %v", ld, err)
	}
	if err := os.Remove(owners[2]); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(owners[2], 0o700); err != nil {
		t.Fatal(err)
	}
	le, err := Allocate(dir, p, owners[2])
	if err != nil || le.Range != a {
		t.Fatalf("lease of a replaced directory not taken over: %v, %v", le, err)
	}
	bad := le
	bad.Range.Size = 7
	if err := bad.Release(); err == nil {
		t.Error("release of a range that is no slot accepted")
	}
	// Another pool whose slots overlap the held ones gets none of their ids.
	shifted := Pool{Start: p.Start + Size/2, End: p.Start + Size/2 + 3*Size - 1}
	lf, err := Allocate(dir, shifted, owners[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, held := range []Range{ld.Range, le.Range} {
		if lf.Range.Start < held.Start+held.Size && held.Start < lf.Range.Start+lf.Range.Size {
			t.Errorf("slot %v of an overlapping pool overlaps the held %v", lf.Range, held)
		}
	}
}

func TestMountOptions(t *testing.T) {
	r := Range{Start: 300000, Size: Size}
	got := r.MountOptions()
	if len(got) != 2 || got[0] != "uidmap=0:300000:65536" || got[1] != "gidmap=0:300000:65536" {
		t.Errorf("MountOptions = %v", got)
	}
}

// TestTransfer: a cache VM's lease passes to the sandbox that took the VM: only from its
// holder, atomically; the sandbox's release frees it, and ReleaseOwner frees every slot
// of one holder.
func TestTransfer(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "leases")
	p := Pool{Start: 1 << 20, End: 1<<20 + 2*Size - 1}
	cacheVM, sandbox, other := t.TempDir(), t.TempDir(), t.TempDir()
	l, err := Allocate(dir, p, cacheVM)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Transfer(dir, p, l.Range, other, sandbox); err == nil {
		t.Fatal("a lease was transferred from a directory that does not hold it")
	}
	got, err := Transfer(dir, p, l.Range, cacheVM, sandbox)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(cacheVM); err != nil { // the cache's directory goes after the handover
		t.Fatal(err)
	}
	if _, err := Allocate(dir, p, other); err != nil {
		t.Fatal(err)
	}
	if _, err := Allocate(dir, p, t.TempDir()); !errdefs.IsUnavailable(err) {
		t.Fatalf("the transferred slot was handed out again: %v", err)
	}
	if err := got.Release(); err != nil {
		t.Fatal(err)
	}
	if _, err := Allocate(dir, p, sandbox); err != nil {
		t.Fatalf("after the sandbox released it: %v", err)
	}
	if err := ReleaseOwner(dir, sandbox); err != nil {
		t.Fatal(err)
	}
	if err := ReleaseOwner(dir, other); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("leases left after ReleaseOwner: %v", ents)
	}
}
