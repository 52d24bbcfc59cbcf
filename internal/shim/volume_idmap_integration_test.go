package shim_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vessel-containers/vessel/internal/sharefs"
)

// TestOverlayVolumeJailed runs a container with vmm_file_ids = "container" whose volumes
// are a read-only overlay (containerd's CRI image volumes are such overlays) and a
// subdirectory of it: an overlay takes no idmapped mount, so the shim shares an overlay
// of its idmapped layers instead. The container reads both, a root-owned 0600 file too,
// as runc's root would, writes neither, and after the delete nothing of the shim's
// overlay is left mounted.
func TestOverlayVolumeJailed(t *testing.T) {
	h := newHarnessConfig(t, fmt.Sprintf("vmm_id_range = %q\nvmm_file_ids = \"container\"\n", usernsPool))
	if err := os.Chmod(h.sbRoot, 0o711); err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "vessel-ovvol")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	lower1, lower2, merged := filepath.Join(dir, "l1"), filepath.Join(dir, "l2"), filepath.Join(dir, "merged")
	for _, d := range []string{lower1, filepath.Join(lower1, "sub"), lower2, filepath.Join(lower2, "sub"), merged} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		filepath.Join(lower1, "top"):        "top-layer",
		filepath.Join(lower1, "sub", "one"): "sub-one",
		filepath.Join(lower2, "secret"):     "root-only",
		filepath.Join(lower2, "sub", "two"): "sub-two",
	}
	for p, s := range files {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(lower2, "secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("overlay", merged, "overlay", unix.MS_RDONLY, "lowerdir="+lower1+":"+lower2); err != nil {
		t.Fatalf("mount the test overlay: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(merged, unix.MNT_DETACH) })

	const id = "ovvol"
	h.start(id, []string{
		"--mount", "type=bind,src=" + merged + ",dst=/ov,options=rbind:ro",
		"--mount", "type=bind,src=" + filepath.Join(merged, "sub") + ",dst=/sub,options=rbind:ro",
	}, "sleep", "1000")
	got := h.ctr("task", "exec", "--exec-id", "read", id, "sh", "-c",
		"cat /ov/top; echo; cat /ov/secret; echo; cat /ov/sub/one; echo; cat /sub/two; echo; stat -c '%u %a' /ov/secret")
	want := "top-layer\nroot-only\nsub-one\nsub-two\n0 600\n"
	if got != want {
		t.Errorf("the container reads %q from the overlay volumes, want %q", got, want)
	}
	got = h.ctr("task", "exec", "--exec-id", "write", id, "sh", "-c",
		"for f in /ov/new /sub/new /ov/top; do if echo x 2>/dev/null >>$f; then echo wrote $f; fi; done; echo end")
	if got != "end\n" {
		t.Errorf("the container wrote to the read-only overlay volumes: %q", got)
	}
	h.remove(id)
	// Left: the test's own overlay only.
	if m, _ := sharefs.MountsUnder(h.ctd.Dir); len(m) > 0 {
		t.Errorf("mounts left under containerd's directory after delete: %v", m)
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(mounts), "\n") {
		if strings.Contains(l, lower1) {
			if f := strings.Fields(l); len(f) < 5 || f[4] != merged {
				t.Errorf("mount of the volume's layers left after delete: %s", l)
			}
		}
	}
	// A writable volume inside an overlay is refused: the overlay of its idmapped layers
	// that the shim shows instead is read-only.
	out, code := h.runFlags([]string{"--mount", "type=bind,src=" + merged + ",dst=/ov,options=rbind:rw"}, "ovvol-rw", "true")
	if code == 0 || !strings.Contains(out, "vmm_file_ids") {
		t.Errorf("a writable volume inside an overlay: exit %d, output %q; want a refusal naming hypervisor.vmm_file_ids", code, out)
	}
	matches, _ := filepath.Glob(filepath.Join(h.ctd.Dir, "*", "*", "*", "*", ".vessel-volumes-*"))
	if len(matches) > 0 {
		t.Errorf("idmapped volume directories left after delete: %v", matches)
	}
}
