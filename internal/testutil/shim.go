package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/vessel-containers/vessel/internal/shimproto"
)

// BuildShim builds the shim binary and returns a directory to put first on containerd's
// PATH. With o empty the directory holds the binary; else it holds a wrapper that runs the
// binary with o's flags (containerd passes a shim none of vessel's own flags).
func BuildShim(t testing.TB, o shimproto.Options) string {
	t.Helper()
	binDir := t.TempDir()
	bin := filepath.Join(binDir, shimproto.BinaryName)
	if o != (shimproto.Options{}) {
		real := filepath.Join(binDir, "real")
		if err := os.Mkdir(real, 0o755); err != nil {
			t.Fatal(err)
		}
		bin = filepath.Join(real, shimproto.BinaryName)
	}
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/containerd-shim-vessel-v2")
	cmd.Dir = RepoRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build shim: %v\n%s", err, out)
	}
	if o != (shimproto.Options{}) {
		if err := shimproto.WriteWrapper(binDir, bin, o); err != nil {
			t.Fatal(err)
		}
	}
	return binDir
}

// BuildStatic builds the main package pkg (a path relative to the repository root, such
// as ./internal/testutil/cmd/setfcap) as a static binary that runs in a guest, and
// returns its path.
func BuildStatic(t testing.TB, pkg string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Dir = RepoRoot(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", pkg, err, out)
	}
	return bin
}
