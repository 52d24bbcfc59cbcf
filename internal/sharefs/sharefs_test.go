package sharefs

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/vessel-containers/vessel/internal/testutil"
)

func TestBindAndRemove(t *testing.T) {
	testutil.RequiresRoot(t)
	ctx := context.Background()
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	srcFile := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(srcFile, []byte("file"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := New(filepath.Join(t.TempDir(), "shared"))
	if err != nil {
		t.Fatal(err)
	}
	rel, err := s.Bind(ctx, "c1", "rootfs", src, false)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(s.Dir(), rel, "f")); string(got) != "data" {
		t.Errorf("bound dir content: got %q, want data", got)
	}
	if GuestPath(rel) != "/run/vessel/shared/c1/rootfs" {
		t.Errorf("guest path: got %s", GuestPath(rel))
	}
	relRO, err := s.Bind(ctx, "c1", "mount-0", srcFile, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.Dir(), relRO), []byte("x"), 0o644); err == nil {
		t.Error("wrote through a read-only share")
	}
	if _, err := s.Bind(ctx, "../evil", "rootfs", src, false); err == nil {
		t.Error("bind with an escaping container id succeeded")
	}
	if err := s.RemoveContainer(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if m, _ := MountsUnder(s.Dir()); len(m) != 0 {
		t.Errorf("mounts left after RemoveContainer: %v", m)
	}
	if got, _ := os.ReadFile(filepath.Join(src, "f")); string(got) != "data" {
		t.Error("removing the share touched the source")
	}
	if _, err := s.Bind(ctx, "c2", "rootfs", src, false); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.Dir()); !os.IsNotExist(err) {
		t.Errorf("share dir still exists after Close: %v", err)
	}
	if err := s.Close(ctx); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestBindMissingSource(t *testing.T) {
	s, err := New(filepath.Join(t.TempDir(), "shared"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Bind(context.Background(), "c1", "rootfs", "/does/not/exist", false); err == nil {
		t.Error("bind of a missing source succeeded")
	}
}
