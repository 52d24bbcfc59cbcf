package critest

import (
	"io"
	"net/http"
	"testing"
)

// TestRegistryServesPull checks the pull half of the distribution API the test registry
// answers: a tag under the mirrored host, the same manifest by digest, its blobs, and
// not-found for a tag of another host.
func TestRegistryServesPull(t *testing.T) {
	reg := newRegistry()
	layer, err := layerOf(map[string]file{"hello": {mode: 0o644, data: []byte("hi\n")}})
	if err != nil {
		t.Fatal(err)
	}
	md, err := reg.add("registry.k8s.io/e2e/x:1", image{layers: [][]byte{layer}, config: map[string]any{"Cmd": []string{"sh"}}})
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + reg.serve(t) + "/v2/"
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
	if code != http.StatusOK || digest != md || digestOf(body) != md {
		t.Errorf("manifest by tag: %d digest %s (body %s), want 200 %s", code, digest, digestOf(body), md)
	}
	if code, _, _ := get("e2e/x/manifests/" + md + "?ns=registry.k8s.io"); code != http.StatusOK {
		t.Errorf("manifest by digest = %d, want 200", code)
	}
	if code, _, got := get("e2e/x/blobs/" + digestOf(layer) + "?ns=registry.k8s.io"); code != http.StatusOK || string(got) != string(layer) {
		t.Errorf("layer blob = %d (%d bytes), want 200 (%d bytes)", code, len(got), len(layer))
	}
	if code, _, _ := get("e2e/x/manifests/1?ns=gcr.io"); code != http.StatusNotFound {
		t.Errorf("tag of another host = %d, want 404", code)
	}
}
