package testutil

import (
	"os"
	"path/filepath"
	"testing"
)

// ClosedDir returns a new mode-0700 directory, removed when the test ends, that holds the
// mode-0600 file name with content: a host directory only its owner may read, for tests
// that check who can reach it.
func ClosedDir(t testing.TB, name, content string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}
