package shim

import (
	"context"
	"errors"
	"net"
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

// deadSocket leaves a unix socket file at path that nothing listens on, as a killed shim
// does.
func deadSocket(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
}

func TestStopRemovesDeadShimSocket(t *testing.T) {
	for _, tc := range []struct {
		name     string
		make     func(t *testing.T, path string)
		wantKept bool
	}{
		{"dead socket", deadSocket, false},
		{"served socket", func(t *testing.T, path string) {
			l, err := net.Listen("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
		}, true},
		{"not a socket", func(t *testing.T, path string) {
			if err := os.WriteFile(path, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			sock := filepath.Join(dir, "sock")
			tc.make(t, sock)
			bundle := filepath.Join(dir, "c1")
			if err := os.Mkdir(bundle, 0o700); err != nil {
				t.Fatal(err)
			}
			for name, data := range map[string]string{"config.json": "{}", "address": "unix://" + sock} {
				if err := os.WriteFile(filepath.Join(bundle, name), []byte(data), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			t.Chdir(bundle)
			t.Setenv("VESSEL_SANDBOX_ROOT", filepath.Join(dir, "sandboxes"))
			ctx := namespaces.WithNamespace(context.Background(), "k8s.io")
			if _, err := NewManager().Stop(ctx, "c1"); err != nil {
				t.Fatalf("shim delete: %v", err)
			}
			_, err := os.Lstat(sock)
			if kept := err == nil; kept != tc.wantKept {
				t.Errorf("socket kept: got %v, want %v", kept, tc.wantKept)
			}
		})
	}
}

func TestRemoveDeadSocketsDerivesAddress(t *testing.T) {
	root := t.TempDir()
	ctx := namespaces.WithNamespace(context.Background(), CLINamespace)
	addr, err := socketAddress(ctx, root, "pod1")
	if err != nil {
		t.Fatal(err)
	}
	sock := strings.TrimPrefix(addr, "unix://")
	deadSocket(t, sock)
	// No address file in the bundle: the socket is found from -address and the sandbox id.
	removeDeadSockets(ctx, t.TempDir(), "pod1", root)
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dead socket %s: got %v, want it removed", sock, err)
	}
}
