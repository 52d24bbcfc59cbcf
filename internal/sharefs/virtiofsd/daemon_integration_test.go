package virtiofsd

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vessel-containers/vessel/internal/config"
	"github.com/vessel-containers/vessel/internal/idrange"
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

// TestUserNSBelowClosedDir starts a daemon on unprivileged ids (Config.UserNS) serving a
// source below a mode-0700 directory: its root holds the source at its host path and not
// the directory's other files, a connection makes it set up its sandbox (its file server
// pivots into the source, whose view of the mounts names it "/"), and no mode changes.
func TestUserNSBelowClosedDir(t *testing.T) {
	cfg := daemonConfig(t)
	ids := idrange.Range{Start: 2000440000, Size: idrange.Size}
	cfg.UserNS = &ids
	dir := filepath.Dir(cfg.Source)
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	uid := int(ids.HostID(0))
	if err := os.Chown(cfg.Source, uid, uid); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg.Source, "file"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	d, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := d.Stop(ctx); err != nil {
			t.Error(err)
		}
	}()
	root := filepath.Join("/proc", itoa(d.Pid()), "root")
	if _, err := os.Stat(filepath.Join(root, cfg.Source, "file")); err != nil {
		t.Errorf("the source's file in the daemon's root: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(root, cfg.Log)); !os.IsNotExist(err) {
		t.Errorf("the log in the daemon's root: %v, want it absent", err)
	}
	if _, err := os.Lstat(filepath.Join(root, "/etc/passwd")); !os.IsNotExist(err) {
		t.Errorf("/etc/passwd in the daemon's root: %v, want it absent", err)
	}

	conn, err := net.Dial("unix", cfg.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// The file server is forked once the daemon accepted: poll for it, bounded.
	var srv int
	deadline := time.Now().Add(20 * time.Second)
	for {
		if srv, err = d.ServerPid(); err == nil {
			break
		}
		select {
		case <-d.Done():
			t.Fatalf("daemon exited after the connection: %v", d.Err())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no file server: %v", err)
		}
	}
	var want, got syscall.Stat_t
	if err := syscall.Stat(cfg.Source, &want); err != nil {
		t.Fatal(err)
	}
	// The server's root is the source once it pivoted: wait for that too.
	for {
		err = syscall.Stat(filepath.Join("/proc", itoa(srv), "root"), &got)
		if err == nil && got.Dev == want.Dev && got.Ino == want.Ino {
			break
		}
		select {
		case <-d.Done():
			t.Fatalf("daemon exited during its sandbox setup: %v", d.Err())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("file server %d's root (%v) is not the source", srv, err)
		}
	}
	st, err := os.Stat(dir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("the source's parent: %v, %v; want mode 0700 unchanged", st, err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
