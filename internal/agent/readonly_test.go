//go:build linux

package agent

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// TestReadonlySpecialFiles checks that a read-only path naming a special file becomes a
// read-only bind mount of it, and that directories, regular files, missing and relative
// paths stay read-only paths.
func TestReadonlySpecialFiles(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "dir", "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(root, "dir", "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A link in the root file system resolves inside it.
	if err := os.Symlink("/dir/fifo", filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	spec := &specs.Spec{
		Root:  &specs.Root{Path: root},
		Linux: &specs.Linux{ReadonlyPaths: []string{"/dir", "/dir/file", "/dir/fifo", "/missing", "rel", "/link"}},
	}
	if err := readonlySpecialFiles(spec); err != nil {
		t.Fatal(err)
	}
	if want := []string{"/dir", "/dir/file", "/missing", "rel"}; !slices.Equal(spec.Linux.ReadonlyPaths, want) {
		t.Errorf("readonly paths: got %q, want %q", spec.Linux.ReadonlyPaths, want)
	}
	fifo := filepath.Join(root, "dir", "fifo")
	want := []specs.Mount{
		{Destination: "/dir/fifo", Type: "bind", Source: fifo},
		{Destination: "/link", Type: "bind", Source: fifo},
	}
	if len(spec.Mounts) != len(want) {
		t.Fatalf("mounts: got %+v, want %+v", spec.Mounts, want)
	}
	for i, m := range spec.Mounts {
		if m.Destination != want[i].Destination || m.Source != want[i].Source || m.Type != "bind" || !slices.Contains(m.Options, "ro") || !slices.Contains(m.Options, "bind") {
			t.Errorf("mounts[%d]: got %+v, want a read-only bind of %s at %s", i, m, want[i].Source, want[i].Destination)
		}
	}
}
