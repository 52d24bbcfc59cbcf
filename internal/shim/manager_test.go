package shim

import (
	"context"
	"errors"
	"flag"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/shim"

	"github.com/vessel-containers/vessel/internal/persist"
	"github.com/vessel-containers/vessel/internal/shimproto"
)

// flagSet is the flag set of a shim binary as shim.Run parses it: containerd's flags and the
// shim's own, parsed from args.
func flagSet(t *testing.T, args []string) *flag.FlagSet {
	t.Helper()
	fs := flag.NewFlagSet(shimproto.BinaryName, flag.ContinueOnError)
	for _, name := range []string{shimproto.FlagNamespace, shimproto.FlagID, shimproto.FlagAddress, shimproto.FlagBundle, "publish-binary"} {
		fs.String(name, "", "")
	}
	fs.Bool(shimproto.FlagDebug, false, "")
	shimproto.Register(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parse %q: %v", args, err)
	}
	return fs
}

func TestManagerReadsTheClientsFlags(t *testing.T) {
	want := shimproto.Options{SandboxRoot: "/r/sandboxes", LogFile: "/r/containers/c1/shim.log", SocketDir: "/r/s"}
	for _, action := range []string{shimproto.ActionStart, shimproto.ActionDelete} {
		t.Run(action, func(t *testing.T) {
			inv := shimproto.Invocation{Namespace: "any", ID: "c1", Bundle: "/b", Debug: true, Options: want}
			fs := flagSet(t, inv.Args(action))
			m := Manager{flags: fs}
			if got := m.options(); got != want {
				t.Errorf("manager's options: got %+v, want %+v", got, want)
			}
			if got := fs.Arg(0); got != action {
				t.Errorf("action: got %q, want %q", got, action)
			}
			if got := m.address(); got != "" {
				t.Errorf("address of a shim without containerd: got %q, want none", got)
			}
			// The shim process Start runs gets the same flags back.
			daemon := shimproto.Invocation{Namespace: "any", ID: "c1", Options: m.options()}
			if got := (Manager{flags: flagSet(t, daemon.Args(""))}).options(); got != want {
				t.Errorf("shim process's options: got %+v, want %+v", got, want)
			}
		})
	}
}

func TestContainerdFlagsKeepDefaults(t *testing.T) {
	// containerd's command line: none of the shim's own flags.
	fs := flagSet(t, []string{"-namespace", "k8s.io", "-address", "/run/containerd/containerd.sock",
		"-publish-binary", "/usr/bin/containerd", "-id", "c1", "start"})
	m := Manager{flags: fs}
	if got := m.options(); got != (shimproto.Options{}) {
		t.Errorf("options of a containerd shim: got %+v, want none", got)
	}
	if got := sandboxRootOf(m.options()); got != persist.DefaultRoot {
		t.Errorf("sandbox root: got %q, want the default %q", got, persist.DefaultRoot)
	}
}

func TestSocketAddress(t *testing.T) {
	ctx := namespaces.WithNamespace(context.Background(), "vessel")
	a, err := socketAddress(ctx, "", "/run/vessel/s", "sb1")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(a, "unix:///run/vessel/s/") || len(strings.TrimPrefix(a, "unix://")) > 100 {
		t.Errorf("socket with -socket-dir %q: want a short path under /run/vessel/s", a)
	}
	if b, _ := socketAddress(ctx, "", "/run/vessel/s", "sb2"); b == a {
		t.Errorf("two sandboxes share socket %s", a)
	}
	if _, err := socketAddress(ctx, "", "relative", "sb1"); err == nil {
		t.Error("a relative -socket-dir is accepted")
	}
	for _, ns := range []string{"k8s.io", "vessel", "vessel-cli"} {
		nctx := namespaces.WithNamespace(context.Background(), ns)
		got, err := socketAddress(nctx, "/run/containerd/containerd.sock", "", "sb1")
		want, _ := shim.SocketAddress(nctx, "/run/containerd/containerd.sock", "sb1", false)
		if err != nil || got != want {
			t.Errorf("namespace %s without -socket-dir: got %q %v, want containerd's %q", ns, got, err, want)
		}
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
			sbDir := filepath.Join(dir, "sandboxes", "c1")
			if err := os.MkdirAll(sbDir, 0o700); err != nil {
				t.Fatal(err)
			}
			m := Manager{flags: flagSet(t, []string{"-" + shimproto.FlagSandboxRoot, filepath.Join(dir, "sandboxes")})}
			ctx := namespaces.WithNamespace(context.Background(), "k8s.io")
			if _, err := m.Stop(ctx, "c1"); err != nil {
				t.Fatalf("shim delete: %v", err)
			}
			_, err := os.Lstat(sock)
			if kept := err == nil; kept != tc.wantKept {
				t.Errorf("socket kept: got %v, want %v", kept, tc.wantKept)
			}
			if _, err := os.Stat(sbDir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("sandbox dir under -sandbox-root: got %v, want it removed", err)
			}
		})
	}
}

func TestRemoveDeadSocketsDerivesAddress(t *testing.T) {
	socketDir := t.TempDir()
	ctx := namespaces.WithNamespace(context.Background(), "vessel")
	addr, err := socketAddress(ctx, "", socketDir, "pod1")
	if err != nil {
		t.Fatal(err)
	}
	sock := strings.TrimPrefix(addr, "unix://")
	deadSocket(t, sock)
	// No address file in the bundle: the socket is found from -socket-dir and the sandbox id.
	removeDeadSockets(ctx, t.TempDir(), "pod1", "", socketDir)
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dead socket %s: got %v, want it removed", sock, err)
	}
}
