package testutil

import (
	"context"
	"net"
	"path/filepath"
	"testing"

	"github.com/containerd/ttrpc"
)

// ServeTTRPC serves srv on a unix socket of its own until the test ends and returns a
// connection to it. Its cleanup closes srv and waits for Serve to return; a client the
// caller makes on the connection and closes in a cleanup registered after this call is
// closed first.
func ServeTTRPC(t testing.TB, srv *ttrpc.Server) net.Conn {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "ttrpc.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { // owner: the test; returns when the cleanup closes srv
		defer close(done)
		_ = srv.Serve(context.Background(), l)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	return conn
}
