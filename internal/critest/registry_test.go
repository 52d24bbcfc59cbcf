package critest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// registry is a read-only OCI distribution registry held in memory: the pull half of the
// distribution API (GET /v2/, manifests by tag or digest, blobs by digest), enough for
// containerd to pull the images critest names. Repositories are keyed by the name
// containerd asks for under the registry host it mirrors (its `ns` query parameter), so
// registry.k8s.io/x and gcr.io/x are distinct.
type registry struct {
	mu sync.Mutex
	// blobs and manifests by digest, tags by "host/name:tag"; guarded by mu.
	blobs     map[string][]byte
	manifests map[string][]byte
	tags      map[string]string
}

func newRegistry() *registry {
	return &registry{blobs: map[string][]byte{}, manifests: map[string][]byte{}, tags: map[string]string{}}
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// image is an image's content: uncompressed layer tars and the image config.
type image struct {
	layers [][]byte
	config map[string]any
}

// add stores img under ref ("host/repo/name:tag") and returns its manifest digest.
func (r *registry) add(ref string, img image) (string, error) {
	var diffIDs []string
	var layers []any
	for _, l := range img.layers {
		d := digestOf(l)
		diffIDs = append(diffIDs, d)
		layers = append(layers, map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": len(l)})
	}
	cfg, err := json.Marshal(map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"config":       img.config,
		"rootfs":       map[string]any{"type": "layers", "diff_ids": diffIDs},
	})
	if err != nil {
		return "", fmt.Errorf("image config of %s: %w", ref, err)
	}
	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digestOf(cfg), "size": len(cfg)},
		"layers":        layers,
	})
	if err != nil {
		return "", fmt.Errorf("image manifest of %s: %w", ref, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range img.layers {
		r.blobs[digestOf(l)] = l
	}
	r.blobs[digestOf(cfg)] = cfg
	md := digestOf(manifest)
	r.manifests[md] = manifest
	r.tags[ref] = md
	return md, nil
}

// serve listens on a loopback port until the test ends and returns "127.0.0.1:port".
func (r *registry) serve(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: r}
	done := make(chan struct{})
	go func() { // owner: the test; ends when Close closes the listener
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() { _ = srv.Close(); <-done })
	return ln.Addr().String()
}

func (r *registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		http.Error(w, "read-only registry", http.StatusMethodNotAllowed)
		return
	}
	path := strings.TrimPrefix(req.URL.Path, "/v2/")
	if path == "" || path == req.URL.Path {
		w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
		return
	}
	host := req.URL.Query().Get("ns")
	r.mu.Lock()
	defer r.mu.Unlock()
	if i := strings.LastIndex(path, "/manifests/"); i > 0 {
		name, ref := path[:i], path[i+len("/manifests/"):]
		md := ref
		if !strings.HasPrefix(ref, "sha256:") {
			md = r.tags[host+"/"+name+":"+ref]
		}
		body, ok := r.manifests[md]
		if !ok {
			http.Error(w, `{"errors":[{"code":"MANIFEST_UNKNOWN"}]}`, http.StatusNotFound)
			return
		}
		r.write(w, req, "application/vnd.oci.image.manifest.v1+json", md, body)
		return
	}
	if i := strings.LastIndex(path, "/blobs/"); i > 0 {
		d := path[i+len("/blobs/"):]
		body, ok := r.blobs[d]
		if !ok {
			http.Error(w, `{"errors":[{"code":"BLOB_UNKNOWN"}]}`, http.StatusNotFound)
			return
		}
		r.write(w, req, "application/octet-stream", d, body)
		return
	}
	http.NotFound(w, req)
}

func (r *registry) write(w http.ResponseWriter, req *http.Request, mediaType, digest string, body []byte) {
	w.Header().Set("Content-Type", mediaType)
	w.Header().Set("Docker-Content-Digest", digest)
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	if req.Method == http.MethodGet {
		_, _ = w.Write(body)
	}
}
