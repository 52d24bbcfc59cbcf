package store

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestLifecycle(t *testing.T) {
	s := New(t.TempDir())
	if ids, err := s.List(); err != nil || len(ids) != 0 {
		t.Fatalf("empty store: %v %v", ids, err)
	}
	l, err := s.Create("c1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create("c1"); !errdefs.IsAlreadyExists(err) {
		t.Errorf("second create: got %v, want already exists", err)
	}
	if !s.Busy("c1") {
		t.Error("a locked container is not busy")
	}
	c := &Container{ID: "c1", Bundle: "/b", Status: Creating, Created: time.Now().UTC(), Spec: &specs.Spec{Version: "1.2.0"}}
	if err := s.Save(c); err != nil {
		t.Fatal(err)
	}
	l.Unlock()
	if s.Busy("c1") {
		t.Error("an unlocked container is busy")
	}
	got, err := s.Load("c1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Bundle != "/b" || got.Status != Creating || got.Spec.Version != "1.2.0" {
		t.Errorf("loaded %+v", got)
	}
	if ids, _ := s.List(); len(ids) != 1 || ids[0] != "c1" {
		t.Errorf("list: %v", ids)
	}
	if s.Owner("c1") == "" {
		t.Error("no owner")
	}

	// A second locker waits for the first, and sees the removal.
	l, err = s.Lock("c1")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		l2, err := s.Lock("c1")
		if err == nil {
			l2.Unlock()
		}
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("second lock did not wait: %v", err)
	case <-time.After(100 * time.Millisecond): // it is blocked, as it should be
	}
	if err := s.Remove("c1"); err != nil {
		t.Fatal(err)
	}
	l.Unlock()
	if err := <-done; !errdefs.IsNotFound(err) {
		t.Errorf("lock of a removed container: got %v, want not found", err)
	}
	if _, err := s.Load("c1"); !errdefs.IsNotFound(err) {
		t.Errorf("load after remove: %v", err)
	}
	if _, err := s.Lock("nope"); !errdefs.IsNotFound(err) {
		t.Errorf("lock of a missing container: %v", err)
	}
}

// TestFormats: a state written before the format was recorded is read as format 1; a newer
// format is refused with an error naming it; what Save writes records the format.
func TestFormats(t *testing.T) {
	s := New(t.TempDir())
	write := func(id, data string) {
		t.Helper()
		if err := os.MkdirAll(s.Dir(id), 0o711); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(s.Dir(id), stateFile), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// As the release before the format field wrote it.
	write("old", `{"id":"old","sandbox_id":"old","bundle":"/b","rootfs":"/b/rootfs","created":"2026-11-01T00:00:00Z","status":"created","shim_address":"unix:///run/x","shim_pid":42,"spec":null}`)
	c, err := s.Load("old")
	if err != nil {
		t.Fatalf("load a state without a format: %v", err)
	}
	if c.Version != 1 || c.ShimAddress != "unix:///run/x" || c.ShimPid != 42 || c.Status != Created {
		t.Errorf("old state loaded as %+v", c)
	}

	write("new", `{"version":2,"id":"new","status":"created"}`)
	if _, err := s.Load("new"); err == nil || !strings.Contains(err.Error(), "format 2") {
		t.Errorf("load format 2: got %v, want an error naming the format", err)
	}

	if err := s.Save(&Container{ID: "old", Status: Created}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(s.Dir("old"), stateFile))
	if err != nil || !strings.Contains(string(data), `"version": 1`) {
		t.Errorf("saved state %s (%v) does not record format 1", data, err)
	}
}
