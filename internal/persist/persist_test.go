package persist

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

func TestSaveLoadRoundTrip(t *testing.T) {
	dir := t.TempDir()
	in := &Sandbox{ID: "s1", Created: time.Unix(1700000000, 0).UTC(), Hypervisor: "qemu", VMPid: 42, State: "running",
		Containers: map[string]Container{"c1": {ID: "c1", Rootfs: "/x/rootfs", State: "created"}}}
	if err := Save(dir, in); err != nil {
		t.Fatal(err)
	}
	got, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != "s1" || got.VMPid != 42 || got.Version != Version || got.Containers["c1"].Rootfs != "/x/rootfs" || !got.Created.Equal(in.Created) {
		t.Fatalf("got %+v, want %+v", got, in)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("got %d files in state dir, want only state.json", len(entries))
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(dir); !errdefs.IsNotFound(err) {
		t.Fatalf("missing state: got %v, want not found", err)
	}
	if err := os.WriteFile(filepath.Join(dir, stateFile), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); err == nil {
		t.Fatal("corrupt state: got nil error")
	}
	if err := os.WriteFile(filepath.Join(dir, stateFile), []byte(`{"version": 99}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); err == nil {
		t.Fatal("future version: got nil error")
	}
}
