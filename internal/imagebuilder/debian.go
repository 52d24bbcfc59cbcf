package imagebuilder

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"unicode"
)

// DebianKernel is an installed Debian linux-image package.
type DebianKernel struct {
	Release    string // uname -r, e.g. 6.1.0-28-cloud-amd64
	Vmlinuz    string // <root>/boot/vmlinuz-<release>
	ModulesDir string // <root>/lib/modules/<release>
}

// FindDebianKernel returns the newest kernel under root ("/" on a host) that has both
// boot/vmlinuz-<release> and lib/modules/<release>.
func FindDebianKernel(root string) (DebianKernel, error) {
	if root == "" {
		root = "/"
	}
	images, err := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if err != nil {
		return DebianKernel{}, fmt.Errorf("list kernels: %w", err)
	}
	var found []DebianKernel
	for _, img := range images {
		rel := strings.TrimPrefix(filepath.Base(img), "vmlinuz-")
		mods := filepath.Join(root, "lib", "modules", rel)
		if fi, err := os.Stat(mods); err != nil || !fi.IsDir() {
			continue
		}
		found = append(found, DebianKernel{Release: rel, Vmlinuz: img, ModulesDir: mods})
	}
	if len(found) == 0 {
		return DebianKernel{}, fmt.Errorf("no Debian kernel installed under %s (need boot/vmlinuz-<release> and lib/modules/<release>): "+
			"apt-get install linux-image-cloud-amd64 (lz4, boots faster, has no 9p: use virtio-fs) or linux-image-amd64", root)
	}
	sort.Slice(found, func(i, j int) bool { return releaseLess(found[i].Release, found[j].Release) })
	return found[len(found)-1], nil
}

// GuestModules returns the modules the guest loads from a Debian kernel. Bus drivers come
// first and are listed explicitly: no device driver depends on virtio_pci. The optional ones
// are missing from some flavours (the cloud kernel has no 9p).
func GuestModules() (required, optional []string) {
	required = []string{"virtio_pci", "virtio_console", "virtio_rng", "virtio_blk", "virtio_net", "overlay"}
	optional = []string{
		"virtio_scsi", "sd_mod",
		"9pnet_virtio", "9p", "virtiofs",
		"vmw_vsock_virtio_transport", "virtio_balloon",
	}
	return required, optional
}

// releaseLess orders kernel releases by their numeric and non-numeric runs, so that
// 6.1.0-10 sorts after 6.1.0-9.
func releaseLess(a, b string) bool {
	ca, cb := releaseChunks(a), releaseChunks(b)
	for i := 0; i < len(ca) && i < len(cb); i++ {
		if ca[i] == cb[i] {
			continue
		}
		na, erra := strconv.Atoi(ca[i])
		nb, errb := strconv.Atoi(cb[i])
		if erra == nil && errb == nil {
			return na < nb
		}
		return ca[i] < cb[i]
	}
	return len(ca) < len(cb)
}

func releaseChunks(s string) []string {
	var chunks []string
	for i := 0; i < len(s); {
		j := i + 1
		digit := unicode.IsDigit(rune(s[i]))
		for j < len(s) && unicode.IsDigit(rune(s[j])) == digit {
			j++
		}
		chunks = append(chunks, s[i:j])
		i = j
	}
	return chunks
}
