// Package busyboximage builds the busybox OCI image archive tests and benchmarks import
// with `ctr image import`: one layer holding the busybox root filesystem (busybox-static
// from Debian, see bundle.BuildBusyboxRootfs), so no registry is involved.
package busyboximage

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/vessel-containers/vessel/internal/bundle"
)

// Names the image is imported under: tests and the benchmark each use their own.
const (
	TestRef  = "localhost/vessel-test/busybox:latest"
	BenchRef = "localhost/vessel-bench/busybox:latest"
)

// Build writes the archive (oci-layout, index.json, blobs) of an image named ref into
// dir as busybox.tar and returns its path. dir also receives the unpacked rootfs it was
// made from (dir/rootfs).
func Build(dir, ref string) (string, error) {
	layer, err := Layer(filepath.Join(dir, "rootfs"))
	if err != nil {
		return "", err
	}
	layerDigest := digest(layer)
	cfg, err := json.Marshal(map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"config":       map[string]any{"Env": []string{"PATH=/bin"}, "Cmd": []string{"sh"}},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{layerDigest}},
	})
	if err != nil {
		return "", fmt.Errorf("image config: %w", err)
	}
	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(cfg), "size": len(cfg)},
		"layers":        []any{map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layerDigest, "size": len(layer)}},
	})
	if err != nil {
		return "", fmt.Errorf("image manifest: %w", err)
	}
	index, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"manifests": []any{map[string]any{
			"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest(manifest), "size": len(manifest),
			"annotations": map[string]string{"org.opencontainers.image.ref.name": ref, "io.containerd.image.name": ref},
			"platform":    map[string]string{"architecture": "amd64", "os": "linux"},
		}},
	})
	if err != nil {
		return "", fmt.Errorf("image index: %w", err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(name string, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	files := []struct {
		name string
		data []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", index},
	}
	for _, blob := range [][]byte{layer, cfg, manifest} {
		files = append(files, struct {
			name string
			data []byte
		}{"blobs/sha256/" + digest(blob)[len("sha256:"):], blob})
	}
	for _, f := range files {
		if err := add(f.name, f.data); err != nil {
			return "", fmt.Errorf("image archive %s: %w", f.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return "", fmt.Errorf("image archive: %w", err)
	}
	path := filepath.Join(dir, "busybox.tar")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return "", fmt.Errorf("write image archive: %w", err)
	}
	return path, nil
}

// Layer builds the busybox root filesystem into rootfs and returns it as an uncompressed
// layer tar (application/vnd.oci.image.layer.v1.tar), every file owned by root.
func Layer(rootfs string) ([]byte, error) {
	if err := bundle.BuildBusyboxRootfs(rootfs, ""); err != nil {
		return nil, fmt.Errorf("busybox rootfs: %w", err)
	}
	return tarDir(rootfs)
}

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// tarDir archives a directory tree (regular files, dirs, symlinks) with root ownership.
func tarDir(root string) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil || rel == "." {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(path); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		hdr.Name = rel
		if d.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			data, err := os.ReadFile(path) //nolint:gosec // the tree is the rootfs this package just built
			if err != nil {
				return err
			}
			if _, err := tw.Write(data); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("tar %s: %w", root, err)
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("tar %s: %w", root, err)
	}
	return buf.Bytes(), nil
}
