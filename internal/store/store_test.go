package store

import (
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
