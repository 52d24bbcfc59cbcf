package unixsock

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/containerd/errdefs"
)

func TestListenMode(t *testing.T) {
	for _, perm := range []os.FileMode{0o600, 0o660} {
		path := filepath.Join(t.TempDir(), "s.sock")
		l, err := Listen(path, perm)
		if err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		umask := syscall.Umask(0)
		syscall.Umask(umask)
		if got, want := st.Mode().Perm(), perm&^os.FileMode(umask); got != want || st.Mode().Type() != os.ModeSocket {
			t.Errorf("socket mode: got %v, want socket %v", st.Mode(), want)
		}
		conn, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		server, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		if err := RequireUID(server, os.Geteuid()); err != nil {
			t.Errorf("peer of the same uid: %v", err)
		}
		if err := RequireUID(server, os.Geteuid()+1); !errors.Is(err, os.ErrPermission) {
			t.Errorf("peer checked against another uid: got %v, want ErrPermission", err)
		}
		cred, err := PeerCred(server.(*net.UnixConn))
		if err != nil || int(cred.Pid) != os.Getpid() {
			t.Errorf("peer credentials: %+v, %v; want pid %d", cred, err, os.Getpid())
		}
		_ = conn.Close()
		_ = server.Close()
		_ = l.Close()
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("socket file after close: %v", err)
		}
	}
}

func TestListenExisting(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(path, 0o600); !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("listen over a file: got %v, want EADDRINUSE", err)
	}
}

func TestRequireUIDNotUnix(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if err := RequireUID(a, os.Geteuid()); !errors.Is(err, os.ErrPermission) {
		t.Errorf("pipe: got %v, want ErrPermission", err)
	}
}

// ListenFile replaces a stale socket, refuses any other file, and leaves the socket file
// when its descriptor is closed.
func TestListenFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "agent.sock")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ListenFile(p, 0o600); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Fatalf("over a regular file: got %v, want ErrAlreadyExists", err)
	}
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	for i := range 2 { // the second replaces the socket the first left
		f, err := ListenFile(p, 0o600)
		if err != nil {
			t.Fatalf("listen %d: %v", i, err)
		}
		f.Close()
		st, err := os.Lstat(p)
		if err != nil || st.Mode().Type() != os.ModeSocket || st.Mode().Perm() != 0o600 {
			t.Fatalf("after closing listener %d: %v %v", i, st, err)
		}
	}
}

// TestLongPath listens on and dials a socket whose path is longer than a socket address
// holds, and checks that closing the listener removes that file.
func TestLongPath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 60), strings.Repeat("e", 60))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "long.sock")
	l, err := Listen(path, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan error, 1)
	go func() { // owner: this test; ends after one accept
		c, err := l.Accept()
		if err == nil {
			_, err = c.Write([]byte("x"))
			c.Close()
		}
		accepted <- err
	}()
	conn, err := Dial(context.Background(), &net.Dialer{}, path)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1)
	if _, err := conn.Read(buf); err != nil || buf[0] != 'x' {
		t.Errorf("read: %q %v", buf, err)
	}
	conn.Close()
	if err := <-accepted; err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("socket %s after Close: %v, want it removed", path, err)
	}
	if _, err := Dial(context.Background(), &net.Dialer{}, path); err == nil {
		t.Error("dial after Close succeeded")
	}
}
