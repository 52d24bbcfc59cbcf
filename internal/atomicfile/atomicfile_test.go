package atomicfile

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// entries lists dir's file names.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	for _, content := range []string{"first", "second, longer than the first"} {
		if err := WriteFile(path, []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != content {
			t.Errorf("content: got %q, want %q", got, content)
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o640 {
		t.Errorf("mode: got %v, want %v", got, fs.FileMode(0o640))
	}
	if got := entries(t, dir); len(got) != 1 || got[0] != "state.json" {
		t.Errorf("directory holds %v, want only state.json", got)
	}
}

func TestWriteFailures(t *testing.T) {
	errFill := errors.New("fill failed")
	for _, tc := range []struct {
		name string
		// setup returns the target path inside dir.
		setup func(t *testing.T, dir string) string
		fill  func(w io.Writer) error
		want  error
	}{
		{
			name:  "fill fails",
			setup: func(t *testing.T, dir string) string { return filepath.Join(dir, "f") },
			fill: func(w io.Writer) error {
				_, _ = io.WriteString(w, "partial")
				return errFill
			},
			want: errFill,
		},
		{
			name: "rename over a directory",
			setup: func(t *testing.T, dir string) string {
				p := filepath.Join(dir, "f")
				if err := os.Mkdir(p, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(p, "keep"), nil, 0o644); err != nil {
					t.Fatal(err)
				}
				return p
			},
			fill: func(w io.Writer) error { _, err := io.WriteString(w, "x"); return err },
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := tc.setup(t, dir)
			before := entries(t, dir)
			err := Write(path, 0o600, tc.fill)
			if err == nil {
				t.Fatal("got nil error")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("got %v, want it to wrap %v", err, tc.want)
			}
			if got := entries(t, dir); len(got) != len(before) {
				t.Errorf("directory holds %v after a failed write, want %v (no temporary file)", got, before)
			}
		})
	}
}

func TestWriteKeepsOldContentOnFailure(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := Write(path, 0o600, func(w io.Writer) error {
		_, _ = io.WriteString(w, "new but incomplete")
		return errors.New("disk on fire")
	})
	if err == nil {
		t.Fatal("got nil error")
	}
	if got, _ := os.ReadFile(path); string(got) != "old" {
		t.Errorf("content after a failed write: got %q, want %q", got, "old")
	}
}

func TestWriteMissingDir(t *testing.T) {
	path := filepath.Join(t.TempDir(), "no-such-dir", "f")
	if err := WriteFile(path, nil, 0o600); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("got %v, want it to wrap fs.ErrNotExist", err)
	}
}

func TestSyncDir(t *testing.T) {
	if err := SyncDir(t.TempDir()); err != nil {
		t.Errorf("existing directory: %v", err)
	}
	if err := SyncDir(filepath.Join(t.TempDir(), "gone")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing directory: got %v, want fs.ErrNotExist", err)
	}
}

// A bare file name is replaced in the working directory (the shim writes "address" so).
func TestWriteFileRelative(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := WriteFile("address", []byte("unix:///x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "address")); err != nil || string(got) != "unix:///x" {
		t.Errorf("got %q, %v", got, err)
	}
}
