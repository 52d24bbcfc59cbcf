package testutil

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/vessel-containers/vessel/internal/imagebuilder"
)

// RequiresDebugGuest is RequiresVM for a test that needs a shell in the guest (the debug
// console): the guest image itself when it was built with --debug-console; otherwise the
// same kernel with an initramfs made for the test from the image's own agent (the binary
// its manifest names, checked by digest) and the host's static busybox.
func RequiresDebugGuest(t testing.TB) Guest {
	t.Helper()
	g := RequiresVM(t)
	dir := filepath.Dir(g.Initrd)
	data, err := os.ReadFile(filepath.Join(dir, imagebuilder.ManifestName))
	if err != nil {
		skipOrFail(t, "guest image manifest: %v", err)
	}
	var m imagebuilder.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("guest image manifest: %v", err)
	}
	if m.DebugConsole {
		return g
	}
	if len(m.Modules) > 0 {
		skipOrFail(t, "guest image %s has kernel modules and no debug console: build it with `make image IMAGE_FLAGS=--debug-console`", dir)
	}
	if sum, err := fileSHA256(m.Agent.Path); err != nil || sum != m.Agent.SHA256 {
		skipOrFail(t, "guest image %s has no debug console, and its agent %s is not at hand (%v): build it with `make image IMAGE_FLAGS=--debug-console`", dir, m.Agent.Path, err)
	}
	// Searchable, unlike t.TempDir's parent: the jailed VMM's ids (on by default) open the
	// initramfs by path.
	tmp, err := os.MkdirTemp("", "vguest")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(tmp) })
	if err := os.Chmod(tmp, 0o711); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(tmp, imagebuilder.InitramfsName)
	if err := imagebuilder.BuildInitramfs(context.Background(), imagebuilder.InitramfsOptions{
		Output: out, Agent: m.Agent.Path, Busybox: imagebuilder.DefaultBusybox,
	}); err != nil {
		skipOrFail(t, "debug console initramfs: %v", err)
	}
	g.Initrd = out
	return g
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
