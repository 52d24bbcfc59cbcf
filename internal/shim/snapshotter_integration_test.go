package shim_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vessel-containers/vessel/internal/shimproto"
	"github.com/vessel-containers/vessel/internal/testutil"
)

// newHarness2 is newHarness on containerd 2.x (testutil.StartContainerd2) with config
// appended to the daemon's configuration, and the busybox image unpacked into snapshotter.
// prepare, when not nil, runs after the import (to reconfigure the daemon).
func newHarness2(t *testing.T, config, snapshotter string, prepare func(*harness)) *harness {
	t.Helper()
	g := testutil.RequiresVM(t)
	cfg := filepath.Join(t.TempDir(), "configuration.toml")
	if err := os.WriteFile(cfg, g.Config(""), 0o644); err != nil {
		t.Fatal(err)
	}
	sbRoot, err := os.MkdirTemp("", "vsb")
	if err != nil {
		t.Fatal(err)
	}
	binDir := testutil.BuildShim(t, shimproto.Options{SandboxRoot: sbRoot})
	ctd := testutil.StartContainerd2(t, binDir, config, "VESSEL_CONFIG="+cfg)
	h := &harness{t: t, ctd: ctd, sbRoot: sbRoot}
	t.Cleanup(func() {
		h.assertNoLeftovers()
		h.assertNoSnapshotMounts()
		os.RemoveAll(sbRoot)
	})
	// --local: containerd 2.x's transfer service unpacks only into the snapshotters its
	// unpack_config names (overlayfs by default).
	h.ctr("image", "import", "--local", "--all-platforms", "--snapshotter", snapshotter, testutil.BuildBusyboxImage(t))
	if prepare != nil {
		prepare(h)
	}
	return h
}

// assertNoSnapshotMounts checks that nothing of the daemon's directory is mounted on the
// host or backs a loop device.
func (h *harness) assertNoSnapshotMounts() {
	h.t.Helper()
	if data, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if strings.Contains(line, h.ctd.Dir) {
				h.t.Errorf("host mount of the daemon's files: %s", line)
			}
		}
	}
	out, err := exec.Command("losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE").Output()
	if err != nil {
		h.t.Errorf("losetup --list: %v", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, h.ctd.Dir) {
			h.t.Errorf("loop device over the daemon's files: %s", line)
		}
	}
}

// runOnSnapshot starts a container of the busybox image on snapshotter, writes /probe in
// it and returns its /proc/self/mounts line for "/"; while it runs the host has no mount
// and no loop device over the snapshot. The task is deleted before it returns; the
// container (and its snapshot) stays until the test ends.
func (h *harness) runOnSnapshot(snapshotter, id string) string {
	h.t.Helper()
	h.start(id, []string{"--snapshotter", snapshotter}, "sleep", "1000")
	root := h.ctrOut("task", "exec", "--exec-id", "probe", id, "sh", "-c", "echo written by the guest > /probe && sync && grep ' / ' /proc/self/mounts")
	h.assertNoSnapshotMounts()
	h.ctr("task", "kill", "-s", "SIGKILL", id)
	ctx, cancel := h.ctx()
	defer cancel()
	if _, err := h.ctd.Ctr(ctx, "task", "delete", "--force", id); err != nil {
		h.t.Fatal(err)
	}
	return strings.TrimSpace(root)
}

// ctrOut runs ctr and returns its standard output; ctr 2.x prints the daemon's
// deprecation warnings on its standard error.
func (h *harness) ctrOut(args ...string) string {
	h.t.Helper()
	ctx, cancel := h.ctx()
	defer cancel()
	cmd := h.ctd.CtrCmd(ctx, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		h.t.Fatalf("ctr %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// debugfsCat reads a file of an ext4 image without mounting it.
func debugfsCat(t *testing.T, image, name string) string {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", "cat "+name, image).Output()
	if err != nil {
		t.Fatalf("debugfs cat %s in %s: %v", name, image, err)
	}
	return string(out)
}

// TestBlockfileSnapshotter runs a container whose rootfs comes from containerd 2.x's
// blockfile snapshotter (an ext4 image file per snapshot, made from an ext4 scratch file):
// the file reaches the VM as a disk, the guest's root is that ext4 disk, not 9p, and the
// container's write is in the snapshot's file after the container ends.
func TestBlockfileSnapshotter(t *testing.T) {
	testutil.RequiresVM(t)
	for _, tool := range []string{"mkfs.ext4", "debugfs", "losetup"} {
		testutil.RequiresTool(t, tool)
	}
	scratch := filepath.Join(t.TempDir(), "scratch.img")
	if err := os.WriteFile(scratch, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(scratch, 64<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", scratch).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	h := newHarness2(t, `[plugins."io.containerd.snapshotter.v1.blockfile"]
  scratch_file = "`+scratch+`"
  fs_type = "ext4"
  mount_options = ["loop"]
`, "blockfile", nil)
	root := h.runOnSnapshot("blockfile", "bf")
	t.Logf("root in the guest: %s", root)
	if f := strings.Fields(root); len(f) < 3 || f[2] != "ext4" || !strings.HasPrefix(f[0], "/dev/") {
		t.Errorf("root in the guest: %q, want an ext4 disk (/dev/...)", root)
	}
	// The snapshot's file: the source of its mount.
	var file string
	for _, w := range strings.Fields(h.ctrOut("snapshots", "--snapshotter", "blockfile", "mounts", "/mnt", "bf")) {
		if strings.HasPrefix(w, h.ctd.Dir+"/") {
			file = w
		}
	}
	if file == "" {
		t.Fatal("no blockfile for snapshot bf")
	}
	t.Logf("snapshot file: %s", file)
	if got := debugfsCat(t, file, "/probe"); got != "written by the guest\n" {
		t.Errorf("/probe in the snapshot %s: got %q", file, got)
	}
}

// TestErofsSnapshotter runs a container whose rootfs comes from containerd 2.x's erofs
// snapshotter with default_size set: the image layer (an erofs file) and the writable
// layer (an ext4 file containerd makes) reach the VM as disks and the agent builds the
// overlay over them; the guest's root is that overlay, not 9p, and the container's write
// is in the writable layer's file (upper/probe) after the container ends.
//
// Before default_size is set, the writable layer is a host directory: the shim mounts the
// layers on the host and shares the overlay as files, and the write lands in that
// directory. The image is unpacked before default_size is set too: Debian's erofs-utils has
// no tar mode,
// so containerd's erofs differ is off and the walking differ unpacks, which cannot write
// into a block-mode writable layer; committed layers are erofs files either way.
func TestErofsSnapshotter(t *testing.T) {
	testutil.RequiresVM(t)
	for _, tool := range []string{"mkfs.erofs", "mkfs.ext4", "debugfs", "losetup"} {
		testutil.RequiresTool(t, tool)
	}
	const section = `[plugins."io.containerd.snapshotter.v1.erofs"]
`
	h := newHarness2(t, section, "erofs", func(h *harness) {
		// Without default_size the writable layer is a host directory: the shim mounts
		// the layers and the overlay on the host and shares it as files; the write lands
		// in the snapshot's directory, and the task's delete unmounts everything.
		h.start("hostdir", []string{"--snapshotter", "erofs"}, "sleep", "1000")
		root := strings.TrimSpace(h.ctrOut("task", "exec", "--exec-id", "probe", "hostdir", "sh", "-c", "echo written through the share > /probe && sync && grep ' / ' /proc/self/mounts"))
		t.Logf("without default_size, root in the guest: %s", root)
		if f := strings.Fields(root); len(f) < 3 || f[2] != "9p" {
			t.Errorf("without default_size, root in the guest: %q, want the shared host mount (9p)", root)
		}
		h.ctr("task", "kill", "-s", "SIGKILL", "hostdir")
		ctx, cancel := h.ctx()
		defer cancel()
		if _, err := h.ctd.Ctr(ctx, "task", "delete", "--force", "hostdir"); err != nil {
			t.Fatal(err)
		}
		h.assertNoSnapshotMounts()
		probes, err := filepath.Glob(filepath.Join(h.ctd.Dir, "root", "io.containerd.snapshotter.v1.erofs", "snapshots", "*", "fs", "probe"))
		if err != nil || len(probes) != 1 {
			t.Fatalf("probe files in the snapshots' upper directories: %v %v, want one", probes, err)
		}
		if data, err := os.ReadFile(probes[0]); err != nil || string(data) != "written through the share\n" {
			t.Errorf("%s: %q %v", probes[0], data, err)
		}
		h.remove("hostdir")
		cfgPath := filepath.Join(h.ctd.Dir, "config.toml")
		data, err := os.ReadFile(cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(string(data), section) {
			t.Fatalf("the erofs section is not last in %s:\n%s", cfgPath, data)
		}
		if err := os.WriteFile(cfgPath, append(data, "  default_size = \"64M\"\n"...), 0o600); err != nil {
			t.Fatal(err)
		}
		h.ctd.Restart(t)
	})
	root := h.runOnSnapshot("erofs", "ef")
	t.Logf("root in the guest: %s", root)
	if f := strings.Fields(root); len(f) < 3 || f[2] != "overlay" {
		t.Errorf("root in the guest: %q, want the overlay the agent built", root)
	}
	layers, err := filepath.Glob(filepath.Join(h.ctd.Dir, "root", "io.containerd.snapshotter.v1.erofs", "snapshots", "*", "rwlayer.img"))
	if err != nil || len(layers) != 1 {
		t.Fatalf("writable layer files: %v %v, want one", layers, err)
	}
	if got := debugfsCat(t, layers[0], "/upper/probe"); got != "written by the guest\n" {
		t.Errorf("upper/probe in the writable layer %s: got %q", layers[0], got)
	}
}
