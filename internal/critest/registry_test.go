package critest

import (
	"net"
	"testing"

	"github.com/vessel-containers/vessel/internal/ociregistry"
)

// serveRegistry serves reg on a loopback port until the test ends and returns
// "127.0.0.1:port".
func serveRegistry(t *testing.T, reg *ociregistry.Registry) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, done := reg.Serve(ln)
	t.Cleanup(func() { _ = srv.Close(); <-done })
	return ln.Addr().String()
}
