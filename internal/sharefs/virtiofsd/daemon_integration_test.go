package virtiofsd

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vessel-containers/vessel/internal/config"
	"github.com/vessel-containers/vessel/internal/jail"
	"github.com/vessel-containers/vessel/internal/testutil"
)

// TestMain lets the test binary double as the jail entry the daemon is started through.
func TestMain(m *testing.M) {
	jail.Main()
	os.Exit(m.Run())
}

func daemonConfig(t *testing.T) Config {
	t.Helper()
	testutil.RequiresIntegration(t)
	testutil.RequiresRoot(t)
	if _, err := os.Stat(config.DefaultVirtioFSDaemon); err != nil {
		t.Skipf("no virtiofsd: %v", err)
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	return Config{Binary: config.DefaultVirtioFSDaemon, Source: src, Socket: filepath.Join(dir, "fs.sock"), Log: filepath.Join(dir, "fs.log")}
}

// TestStartStop starts the daemon, finds it waiting on its socket in a pid namespace of
// its own, stops it and finds it reaped and the socket gone.
func TestStartStop(t *testing.T) {
	cfg := daemonConfig(t)
	ctx := context.Background()
	d, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(cfg.Socket)
	if err != nil || st.Mode().Type() != os.ModeSocket || st.Mode().Perm() != 0o600 {
		t.Fatalf("socket: %v, %v", st, err)
	}
	self, _ := os.Readlink("/proc/self/ns/pid")
	ns, err := os.Readlink(filepath.Join("/proc", itoa(d.Pid()), "ns/pid"))
	if err != nil || ns == self {
		t.Fatalf("daemon pid namespace %q (%v), ours %q: want its own", ns, err, self)
	}
	if !d.ID().Alive() {
		t.Fatalf("daemon %s not alive", d.ID())
	}
	if err := d.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if d.ID().Exists() {
		t.Fatalf("daemon %s still exists after Stop", d.ID())
	}
	if err := d.Err(); err != nil {
		t.Fatalf("Err after Stop: %v", err)
	}
	if _, err := os.Lstat(cfg.Socket); !os.IsNotExist(err) {
		t.Fatalf("socket after Stop: %v", err)
	}
}

// TestDiesUnexpectedly kills the daemon behind its owner's back: Done closes and Err
// names the daemon and how it died.
func TestDiesUnexpectedly(t *testing.T) {
	cfg := daemonConfig(t)
	d, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = d.Stop(context.Background()) }()
	if err := syscall.Kill(d.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("Done not closed after the daemon was killed")
	}
	if err := d.Err(); err == nil || !strings.Contains(err.Error(), "virtiofsd") || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("Err = %v, want it to say virtiofsd was killed", err)
	}
}

// TestBadStart: a missing binary, a bad option and a non-executable file are refused
// with errors that name them; nothing is left behind.
func TestBadStart(t *testing.T) {
	cfg := daemonConfig(t)
	ctx := context.Background()
	missing := cfg
	missing.Binary = "/nonexistent/virtiofsd"
	if _, err := Start(ctx, missing); err == nil || !strings.Contains(err.Error(), "virtio_fs_daemon /nonexistent/virtiofsd does not exist") {
		t.Fatalf("missing binary: %v", err)
	}
	noexec := cfg
	noexec.Binary = filepath.Join(t.TempDir(), "virtiofsd")
	if err := os.WriteFile(noexec.Binary, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Start(ctx, noexec); err == nil || !strings.Contains(err.Error(), "not executable") {
		t.Fatalf("not executable: %v", err)
	}
	bad := cfg
	bad.ExtraArgs = []string{"--no-such-option"}
	_, err := Start(ctx, bad)
	if err == nil || !strings.Contains(err.Error(), "exited") || !strings.Contains(err.Error(), cfg.Log) {
		t.Fatalf("bad option: %v", err)
	}
	if _, err := os.Lstat(cfg.Socket); !os.IsNotExist(err) {
		t.Fatalf("socket left after failed start: %v", err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
