package idrange

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestConflicts(t *testing.T) {
	dir := t.TempDir()
	h := Host{Etc: filepath.Join(dir, "etc"), Proc: filepath.Join(dir, "proc"), LeaseDir: filepath.Join(dir, "leases")}
	write := func(p, s string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := Pool{Start: 1 << 20, End: 1<<20 + 4*Size - 1}
	write(filepath.Join(h.Etc, "subuid"), "alice:100000:65536\nbob:1114112:65536\n")
	write(filepath.Join(h.Etc, "subgid"), "# comment\nalice:100000:65536\ncarol:1048000:1000\n")
	write(filepath.Join(h.Etc, "passwd"), "root:x:0:0::/root:/bin/sh\ndave:x:1048577:1048577::/home/dave:/bin/sh\n")
	write(filepath.Join(h.Etc, "group"), "root:x:0:\n")
	write(filepath.Join(h.Proc, "1", "status"), "Name:\tinit\nUid:\t0\t0\t0\t0\n")
	write(filepath.Join(h.Proc, "7", "status"), "Name:\tqemu\nUid:\t1048576\t1048576\t1048576\t1048576\n")
	write(filepath.Join(h.Proc, "8", "status"), "Name:\tstray\nState:\tS (sleeping)\nUid:\t1179648\t1179648\t1179648\t1179648\n")
	// A VMM killed with its sandbox, not yet reaped by a slow init: its lease is gone.
	write(filepath.Join(h.Proc, "9", "status"), "Name:\tqemu\nState:\tZ (zombie)\nUid:\t1114112\t1114112\t1114112\t1114112\n")
	write(filepath.Join(h.Proc, "10", "status"), "Name:\tqemu\nState:\tX (dead)\nUid:\t1114112\t1114112\t1114112\t1114112\n")
	write(filepath.Join(h.Proc, "11", "status"), "Name:\tqemu\nState:\tR (running)\nUid:\t1114113\t1114113\t1114113\t1114113\n")
	tag, err := ownerTag(dir) // held by an existing directory
	if err != nil {
		t.Fatal(err)
	}
	write(filepath.Join(h.LeaseDir, "1048576"), tag)
	got, err := Conflicts(p, h)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"/etc/subuid gives bob ids 1114112-1179647",
		"/etc/subgid gives carol ids 1048000-1048999",
		"/etc/passwd has dave with id 1048577",
		"process 11 runs as uid 1114113",
		"process 8 runs as uid 1179648",
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
}
