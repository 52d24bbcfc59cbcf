package ociregistry

import (
	"io"
	"net"
	"net/http"
	"testing"
)

// TestDirectPull checks that an image added as "host/name:tag" is found both through a
// mirror (path name, ns=host) and when the pull names this registry (path host/name), and
// that a write is refused.
func TestDirectPull(t *testing.T) {
	reg := New()
	md, err := reg.Add("ghcr.io/containerd/busybox:1.32", Image{Layers: [][]byte{[]byte("layer")}, Config: map[string]any{"Cmd": []string{"sh"}}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, done := reg.Serve(ln)
	t.Cleanup(func() { _ = srv.Close(); <-done })
	base := "http://" + ln.Addr().String() + "/v2/"
	for _, tc := range []struct {
		path string
		code int
	}{
		{"containerd/busybox/manifests/1.32?ns=ghcr.io", http.StatusOK},
		{"ghcr.io/containerd/busybox/manifests/1.32", http.StatusOK},
		{"ghcr.io/containerd/busybox/manifests/" + md, http.StatusOK},
		{"ghcr.io/containerd/busybox/blobs/" + Digest([]byte("layer")), http.StatusOK},
		{"containerd/busybox/manifests/1.32", http.StatusNotFound},
		{"ghcr.io/containerd/busybox/manifests/1.33", http.StatusNotFound},
	} {
		resp, err := http.Get(base + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != tc.code {
			t.Errorf("GET %s: %d, want %d", tc.path, resp.StatusCode, tc.code)
		}
	}
	resp, err := http.Post(base+"x/blobs/uploads/", "application/octet-stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d, want %d", resp.StatusCode, http.StatusMethodNotAllowed)
	}
}
