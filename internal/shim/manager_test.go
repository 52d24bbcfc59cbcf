package shim

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/shim"
)

func TestSocketAddress(t *testing.T) {
	cli := namespaces.WithNamespace(context.Background(), CLINamespace)
	a, err := socketAddress(cli, "/run/vessel", "sb1")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(a, "unix:///run/vessel/s/") || len(strings.TrimPrefix(a, "unix://")) > 100 {
		t.Errorf("CLI socket %q: want a short path under /run/vessel/s", a)
	}
	if b, _ := socketAddress(cli, "/run/vessel", "sb2"); b == a {
		t.Errorf("two sandboxes share socket %s", a)
	}
	if _, err := socketAddress(cli, "relative", "sb1"); err == nil {
		t.Error("a relative -address is accepted in the CLI namespace")
	}
	ctd := namespaces.WithNamespace(context.Background(), "k8s.io")
	got, err := socketAddress(ctd, "/run/containerd/containerd.sock", "sb1")
	want, _ := shim.SocketAddress(ctd, "/run/containerd/containerd.sock", "sb1", false)
	if err != nil || got != want {
		t.Errorf("containerd socket: got %q %v, want containerd's %q", got, err, want)
	}
}

func TestSandboxIDOfBundle(t *testing.T) {
	dir := t.TempDir()
	spec := `{"annotations":{"io.kubernetes.cri.container-type":"container","io.kubernetes.cri.sandbox-id":"pod1"}}`
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(spec), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.WithValue(context.Background(), shim.OptsKey{}, shim.Opts{BundlePath: dir})
	if got, err := sandboxIDOf(ctx, "c1"); err != nil || got != "pod1" {
		t.Errorf("sandbox of a pod container from -bundle: %q %v", got, err)
	}
	if _, err := sandboxIDOf(context.Background(), "c1"); err == nil {
		t.Error("no config.json in the working directory, yet no error")
	}
}
