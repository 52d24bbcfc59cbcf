package shimclient

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"

	"github.com/vessel-containers/vessel/internal/shimproto"
	"github.com/vessel-containers/vessel/internal/testutil"
)

func TestShimEnv(t *testing.T) {
	env := shimEnv([]string{"PATH=/bin", "TTRPC_ADDRESS=/run/containerd/containerd.sock.ttrpc", "NAMESPACE=k8s.io", "GRPC_ADDRESS=/g", "HOME=/root"})
	if got, want := env, []string{"PATH=/bin", "HOME=/root"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

// buildShim builds the shim binary into a temporary directory.
func buildShim(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the shim binary")
	}
	return filepath.Join(testutil.BuildShim(t, shimproto.Options{}), shimproto.BinaryName)
}

// TestDeleteCleansUpBehindDeadShim starts a shim as the CLI does, kills it, and runs the
// binary's delete action as the CLI does then: the sandbox's state under -sandbox-root and
// the dead shim's socket under -socket-dir go. The delete action runs without environment:
// it learns everything from its flags.
func TestDeleteCleansUpBehindDeadShim(t *testing.T) {
	bin := buildShim(t)
	for _, tc := range []struct {
		name, id, sandboxID, spec string
	}{
		{"sandbox's own container", "c1", "c1", `{}`},
		{"last container of a pod", "c2", "sb2", `{"annotations":{"io.kubernetes.cri.container-type":"container","io.kubernetes.cri.sandbox-id":"sb2"}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A short root: a unix socket path has at most 108 bytes.
			root, err := os.MkdirTemp("", "vsc")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(root) })
			state := filepath.Join(root, "containers", tc.id)
			o := shimproto.Options{
				SandboxRoot: filepath.Join(root, "sandboxes"),
				LogFile:     filepath.Join(state, "shim.log"),
				SocketDir:   filepath.Join(root, "s"),
			}
			sbDir := filepath.Join(o.SandboxRoot, tc.sandboxID)
			bundle := filepath.Join(root, "bundle")
			for _, d := range []string{state, filepath.Join(sbDir, "shared"), bundle} {
				if err := os.MkdirAll(d, 0o700); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(filepath.Join(bundle, "config.json"), []byte(tc.spec), 0o600); err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			cfg := Config{Binary: bin, Dir: state, Invocation: shimproto.Invocation{Namespace: Namespace, ID: tc.id, Bundle: bundle, Debug: true, Options: o}}
			address, err := Start(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			sock := strings.TrimPrefix(address, "unix://")
			if filepath.Dir(sock) != o.SocketDir {
				t.Errorf("shim socket %s: want it in -socket-dir %s", sock, o.SocketDir)
			}
			killShim(t, ctx, address)
			if _, err := os.Lstat(sock); err != nil {
				t.Fatalf("killed shim's socket: %v, want it left behind", err)
			}

			del := cfg
			del.ID = tc.sandboxID
			if tc.id != tc.sandboxID {
				del.Bundle = ""
			}
			cmd := exec.Command(del.Binary, del.Args(shimproto.ActionDelete)...)
			cmd.Dir, cmd.Env = del.Dir, []string{}
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("shim delete: %v\n%s", err, out)
			}
			if _, err := os.Stat(sbDir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("sandbox dir %s: got %v, want it removed", sbDir, err)
			}
			if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("dead shim's socket %s: got %v, want it removed", sock, err)
			}
			if log, err := os.ReadFile(o.LogFile); err != nil || len(log) == 0 {
				t.Errorf("shim log %s: got %q %v, want the shim's lines", o.LogFile, log, err)
			}
		})
	}
}

// killShim kills the shim serving address and waits until its socket refuses connections.
func killShim(t *testing.T, ctx context.Context, address string) {
	t.Helper()
	cl, err := Dial(ctx, address)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := cl.Connect(ctx, &taskAPI.ConnectRequest{ID: "any"})
	cl.Close()
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	if err := syscall.Kill(int(resp.ShimPid), syscall.SIGKILL); err != nil {
		t.Fatalf("kill shim %d: %v", resp.ShimPid, err)
	}
	sock := strings.TrimPrefix(address, "unix://")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		conn, err := net.Dial("unix", sock)
		if errors.Is(err, syscall.ECONNREFUSED) {
			return
		}
		if err == nil {
			conn.Close()
		}
		if time.Now().After(deadline) {
			t.Fatalf("shim %d still serves %s: %v", resp.ShimPid, sock, err)
		}
	}
}

func TestDeleteFailureNamesTheAction(t *testing.T) {
	bin := buildShim(t)
	// No namespace: the shim binary refuses to run.
	err := Delete(context.Background(), Config{Binary: bin, Dir: t.TempDir(), Invocation: shimproto.Invocation{ID: "c1"}})
	if err == nil || !strings.Contains(err.Error(), "shim delete") || !strings.Contains(err.Error(), "namespace") {
		t.Errorf("delete without a namespace: got %v, want an error naming the action and the namespace", err)
	}
}
