package critest

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/vessel-containers/vessel/internal/ociregistry"
)

// TestRegistryServesPull checks the pull half of the distribution API the test registry
// answers: a tag under the mirrored host, the same manifest by digest, its blobs, and
// not-found for a tag of another host.
func TestRegistryServesPull(t *testing.T) {
	reg := ociregistry.New()
	layer, err := layerOf(map[string]file{"hello": {mode: 0o644, data: []byte("hi\n")}})
	if err != nil {
		t.Fatal(err)
	}
	md, err := reg.Add("registry.k8s.io/e2e/x:1", ociregistry.Image{Layers: [][]byte{layer}, Config: map[string]any{"Cmd": []string{"sh"}}})
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + serveRegistry(t, reg) + "/v2/"
	get := func(path string) (int, string, []byte) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, resp.Header.Get("Docker-Content-Digest"), body
	}
	if code, _, _ := get(""); code != http.StatusOK {
		t.Errorf("GET /v2/ = %d, want 200", code)
	}
	code, digest, body := get("e2e/x/manifests/1?ns=registry.k8s.io")
	if code != http.StatusOK || digest != md || ociregistry.Digest(body) != md {
		t.Errorf("manifest by tag: %d digest %s (body %s), want 200 %s", code, digest, ociregistry.Digest(body), md)
	}
	if code, _, _ := get("e2e/x/manifests/" + md + "?ns=registry.k8s.io"); code != http.StatusOK {
		t.Errorf("manifest by digest = %d, want 200", code)
	}
	if code, _, got := get("e2e/x/blobs/" + ociregistry.Digest(layer) + "?ns=registry.k8s.io"); code != http.StatusOK || string(got) != string(layer) {
		t.Errorf("layer blob = %d (%d bytes), want 200 (%d bytes)", code, len(got), len(layer))
	}
	if code, _, _ := get("e2e/x/manifests/1?ns=gcr.io"); code != http.StatusNotFound {
		t.Errorf("tag of another host = %d, want 404", code)
	}
}

// TestHardlinkApplets checks that applet symlinks become hard links to bin/busybox and
// that bin/busybox comes before them, so that the links resolve when the layer is unpacked.
func TestHardlinkApplets(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range []*tar.Header{
		{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "bin/ash", Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777},
		{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: 2},
		{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "etc/link", Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777},
	} {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			if _, err := tw.Write([]byte("bb")); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	out, err := hardlinkApplets(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	tr := tar.NewReader(bytes.NewReader(out))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%s %c %s", h.Name, h.Typeflag, h.Linkname))
	}
	want := []string{
		"bin/ 5 ", "bin/busybox 0 ", "bin/ash 1 bin/busybox", "etc/ 5 ", "etc/link 2 busybox",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("entries = %q, want %q", got, want)
	}
}
