package ksm

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeDir writes a KSM directory whose files hold the given values. Regular files keep
// only the last write, so the tests check the state the host is left with.
func fakeDir(t *testing.T, vals map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for k, v := range vals {
		if err := os.WriteFile(filepath.Join(dir, k), []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func readFile(t *testing.T, dir, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(data))
}

func TestEnableRestores(t *testing.T) {
	for _, prev := range []string{"0", "1", "2"} {
		dir := fakeDir(t, map[string]string{"run": prev, "pages_to_scan": "100"})
		k, err := New(dir)
		if err != nil {
			t.Fatal(err)
		}
		restore, err := k.Enable()
		if err != nil {
			t.Fatal(err)
		}
		if got := readFile(t, dir, "run"); got != "1" {
			t.Errorf("run was %s: after Enable run = %s, want 1", prev, got)
		}
		if err := k.SetPagesToScan(1000); err != nil {
			t.Fatal(err)
		}
		if err := restore(); err != nil {
			t.Fatal(err)
		}
		if got := readFile(t, dir, "run"); got != prev {
			t.Errorf("run was %s: after restore run = %s", prev, got)
		}
		if got := readFile(t, dir, "pages_to_scan"); got != "100" {
			t.Errorf("run was %s: after restore pages_to_scan = %s, want 100", prev, got)
		}
	}
}

func TestNewMissing(t *testing.T) {
	if _, err := New(filepath.Join(t.TempDir(), "nope")); err == nil {
		t.Fatal("New of a missing directory succeeded")
	}
}

func TestWaitScans(t *testing.T) {
	dir := fakeDir(t, map[string]string{"run": "1", "pages_to_scan": "100", "full_scans": "3", "pages_shared": "10", "pages_sharing": "90"})
	k, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	c, err := k.WaitScans(context.Background(), 1, 2, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if c.FullScans != 3 || c.PagesShared != 10 || c.PagesSharing != 90 {
		t.Errorf("counters %+v", c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := k.WaitScans(ctx, 3, 2, time.Millisecond); err == nil {
		t.Error("WaitScans returned before the scans were done")
	}
}
