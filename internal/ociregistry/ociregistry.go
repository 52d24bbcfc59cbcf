// Package ociregistry is a read-only OCI distribution registry held in memory, for test
// suites that pull public images on a machine that must not reach the internet: the
// images are built locally and served under the names the suites ask for.
package ociregistry

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
)

// Registry answers the pull half of the distribution API (GET /v2/, manifests by tag or
// digest, blobs by digest), enough for containerd to pull. A repository is keyed by
// "host/name", host being the registry containerd mirrors (its `ns` query parameter), so
// registry.k8s.io/x and gcr.io/x are distinct; a pull naming this registry itself (no
// `ns`) asks for "name" alone, so an image added as "ghcr.io/x:1" is also pulled as
// "REGISTRY/ghcr.io/x:1".
type Registry struct {
	mu sync.Mutex
	// blobs and manifests by digest, tags by "host/name:tag"; guarded by mu.
	blobs     map[string][]byte
	manifests map[string][]byte
	tags      map[string]string
}

// New returns an empty registry.
func New() *Registry {
	return &Registry{blobs: map[string][]byte{}, manifests: map[string][]byte{}, tags: map[string]string{}}
}

// Digest is b's sha256 digest in OCI form ("sha256:HEX").
func Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Image is an image's content: uncompressed layer tars and the image config's "config"
// object (Env, Cmd, User ...).
type Image struct {
	Layers [][]byte
	Config map[string]any
}

// Add stores img under ref ("host/repo/name:tag") as a linux/amd64 image and returns its
// manifest digest.
func (r *Registry) Add(ref string, img Image) (string, error) {
	var diffIDs []string
	var layers []any
	for _, l := range img.Layers {
		d := Digest(l)
		diffIDs = append(diffIDs, d)
		layers = append(layers, map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": len(l)})
	}
	cfg, err := json.Marshal(map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"config":       img.Config,
		"rootfs":       map[string]any{"type": "layers", "diff_ids": diffIDs},
	})
	if err != nil {
		return "", fmt.Errorf("image config of %s: %w", ref, err)
	}
	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": Digest(cfg), "size": len(cfg)},
		"layers":        layers,
	})
	if err != nil {
		return "", fmt.Errorf("image manifest of %s: %w", ref, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range img.Layers {
		r.blobs[Digest(l)] = l
	}
	r.blobs[Digest(cfg)] = cfg
	md := Digest(manifest)
	r.manifests[md] = manifest
	r.tags[ref] = md
	return md, nil
}

// Serve serves the registry on ln until Close is called on the returned server; done is
// closed once serving has ended.
func (r *Registry) Serve(ln net.Listener) (srv *http.Server, done <-chan struct{}) {
	srv = &http.Server{Handler: r} //nolint:gosec // a loopback test registry; clients are the suite's own
	d := make(chan struct{})
	go func() { // owner: the caller, through srv.Close
		defer close(d)
		_ = srv.Serve(ln)
	}()
	return srv, d
}

func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		http.Error(w, "read-only registry", http.StatusMethodNotAllowed)
		return
	}
	path := strings.TrimPrefix(req.URL.Path, "/v2/")
	if path == "" || path == req.URL.Path {
		w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
		return
	}
	repo := path
	if host := req.URL.Query().Get("ns"); host != "" {
		repo = host + "/" + path
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if i := strings.LastIndex(repo, "/manifests/"); i > 0 {
		name, ref := repo[:i], repo[i+len("/manifests/"):]
		md := ref
		if !strings.HasPrefix(ref, "sha256:") {
			md = r.tags[name+":"+ref]
		}
		body, ok := r.manifests[md]
		if !ok {
			http.Error(w, `{"errors":[{"code":"MANIFEST_UNKNOWN"}]}`, http.StatusNotFound)
			return
		}
		write(w, req, "application/vnd.oci.image.manifest.v1+json", md, body)
		return
	}
	if i := strings.LastIndex(repo, "/blobs/"); i > 0 {
		d := repo[i+len("/blobs/"):]
		body, ok := r.blobs[d]
		if !ok {
			http.Error(w, `{"errors":[{"code":"BLOB_UNKNOWN"}]}`, http.StatusNotFound)
			return
		}
		write(w, req, "application/octet-stream", d, body)
		return
	}
	http.NotFound(w, req)
}

func write(w http.ResponseWriter, req *http.Request, mediaType, digest string, body []byte) {
	w.Header().Set("Content-Type", mediaType)
	w.Header().Set("Docker-Content-Digest", digest)
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	if req.Method == http.MethodGet {
		_, _ = w.Write(body)
	}
}
