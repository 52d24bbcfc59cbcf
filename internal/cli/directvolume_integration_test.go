package cli_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/vessel-containers/vessel/internal/testutil"
)

// TestDirectVolume records an ext4 image file as the direct-assigned volume of an empty
// host directory; a container bind-mounting that directory gets the image as a disk of
// the VM (an ext4 mount at /data, with the image's file), `vessel direct-volume stats`
// answers the file system's usage from the guest, and the container's write is in the
// image after the container is deleted, when the record no longer names the sandbox.
func TestDirectVolume(t *testing.T) {
	h := newHarness(t)
	h.subreaper()
	testutil.RequiresTool(t, "debugfs")
	const id = "dv1"
	v := startDirectVolume(t, h, id, map[string]string{"hello": "hello from the volume\n"}, nil, "errors=remount-ro")
	image, volume, remove := v.image, v.volume, v.remove
	got := h.ok("exec", id, "sh", "-c", "cat /data/hello && echo written > /data/new && sync && grep ' /data ' /proc/self/mounts | cut -d' ' -f3")
	if want := "hello from the volume\next4\n"; got != want {
		t.Errorf("in the container: got %q, want %q", got, want)
	}
	var st struct {
		BytesTotal  uint64 `json:"bytes_total"`
		BytesFree   uint64 `json:"bytes_free"`
		InodesTotal uint64 `json:"inodes_total"`
	}
	out := h.ok("direct-volume", "stats", "--volume-path", volume)
	t.Logf("direct-volume stats: %s", out)
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("stats %q: %v", out, err)
	}
	if st.BytesTotal == 0 || st.BytesTotal > 16<<20 || st.BytesFree >= st.BytesTotal || st.InodesTotal == 0 {
		t.Errorf("stats: %+v, want the usage of a 16 MiB ext4 file system", st)
	}

	remove()
	data, err := exec.Command("debugfs", "-R", "cat /new", image).Output()
	if err != nil || string(data) != "written\n" {
		t.Errorf("/new in the image: %q, %v", data, err)
	}
	if _, errOut, code := h.run("direct-volume", "stats", "--volume-path", volume); code == 0 || !strings.Contains(errOut, "not used by a sandbox") {
		t.Errorf("stats of a volume whose sandbox is gone: exit %d, %q; want the error that no sandbox uses it", code, errOut)
	}
	if out, _ := exec.Command("losetup", "--list", "--noheadings", "--output", "BACK-FILE").Output(); strings.Contains(string(out), image) {
		t.Errorf("loop device over the volume's image: %s", out)
	}
}

// TestDirectVolumeResize grows the 16 MiB ext4 image of a direct-assigned volume in use
// to 32 MiB: a shrink is refused naming both sizes, QEMU extends the image file, the
// container's df and the volume's stats show the new capacity, and a write larger than
// the old file system succeeds.
func TestDirectVolumeResize(t *testing.T) {
	h := newHarness(t)
	h.subreaper()
	const id = "dvr1"
	v := startDirectVolume(t, h, id, nil, nil)
	image, volume := v.image, v.volume
	if before := dataKiB(t, h, id); before > 16<<10 {
		t.Fatalf("df before the resize: %d KiB, want at most 16 MiB", before)
	}

	if _, errOut, code := h.run("direct-volume", "resize", "--volume-path", volume, "--size", strconv.Itoa(8<<20)); code == 0 ||
		!strings.Contains(errOut, volume) || !strings.Contains(errOut, "8388608") || !strings.Contains(errOut, "16777216") {
		t.Errorf("shrink to 8 MiB: exit %d, %q; want an error naming the volume and both sizes", code, errOut)
	}
	h.ok("direct-volume", "resize", "--volume-path", volume, "--size", strconv.Itoa(32<<20))
	if fi, err := os.Stat(image); err != nil || fi.Size() != 32<<20 {
		t.Errorf("image file after the resize: %v, %v; want 32 MiB", fi, err)
	}
	after := dataKiB(t, h, id)
	t.Logf("df after the resize: %d KiB", after)
	if after <= 24<<10 || after > 32<<10 {
		t.Errorf("df after the resize: %d KiB, want about 32 MiB", after)
	}
	h.ok("exec", id, "sh", "-c", "dd if=/dev/zero of=/data/big bs=1024 count=20480 2>/dev/null && sync")
	if got := h.ok("exec", id, "sh", "-c", "wc -c < /data/big"); strings.TrimSpace(got) != "20971520" {
		t.Errorf("20 MiB write beyond the old size: %q bytes written", got)
	}
	var st struct {
		BytesTotal uint64 `json:"bytes_total"`
	}
	out := h.ok("direct-volume", "stats", "--volume-path", volume)
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("stats %q: %v", out, err)
	}
	if st.BytesTotal <= 24<<20 || st.BytesTotal > 32<<20 {
		t.Errorf("stats after the resize: %s, want a total of about 32 MiB", out)
	}
	// The same size again grows nothing and succeeds.
	h.ok("direct-volume", "resize", "--volume-path", volume, "--size", strconv.Itoa(32<<20))
}

// dataKiB is the size in KiB of the file system at /data in container id, by df.
func dataKiB(t *testing.T, h *harness, id string) uint64 {
	t.Helper()
	out := h.ok("exec", id, "df", "-k", "/data")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	f := strings.Fields(lines[len(lines)-1])
	if len(f) < 2 {
		t.Fatalf("df: %q", out)
	}
	n, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		t.Fatalf("df: %q: %v", out, err)
	}
	return n
}

// TestDirectVolumeResizeBlock grows a direct-assigned volume on a host block device (a
// loop device over a 16 MiB ext4 image): a size beyond the device is refused until the
// device is grown on the host, then the container sees the new capacity.
func TestDirectVolumeResizeBlock(t *testing.T) {
	h := newHarness(t)
	h.subreaper()
	testutil.RequiresTool(t, "losetup")
	const id = "dvr2"
	var dev string
	v := startDirectVolume(t, h, id, nil, func(image string) string {
		dev = testutil.LoopDevice(t, image)
		return dev
	})
	image, volume := v.image, v.volume

	if _, errOut, code := h.run("direct-volume", "resize", "--volume-path", volume, "--size", strconv.Itoa(32<<20)); code == 0 ||
		!strings.Contains(errOut, "grow the device on the host first") || !strings.Contains(errOut, "16777216") {
		t.Errorf("resize beyond the device: exit %d, %q; want an error naming the device's size", code, errOut)
	}
	if err := os.Truncate(image, 32<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("losetup", "--set-capacity", dev).CombinedOutput(); err != nil {
		t.Fatalf("losetup --set-capacity %s: %v: %s", dev, err, out)
	}
	h.ok("direct-volume", "resize", "--volume-path", volume, "--size", strconv.Itoa(32<<20))
	after := dataKiB(t, h, id)
	t.Logf("df after the resize: %d KiB", after)
	if after <= 24<<10 || after > 32<<10 {
		t.Errorf("df after the resize: %d KiB, want about 32 MiB", after)
	}
}

// directVolume is a direct-assigned volume in use: a 16 MiB ext4 image holding the files
// given, recorded (as itself, or as the device asDevice makes of it) as the volume of an
// empty host directory, and a container running with that directory bind-mounted at /data.
// The container, then the record, go at the end of the test.
type directVolume struct {
	image, volume string
	// remove force-deletes the container (once; see harness.created).
	remove func()
}

func startDirectVolume(t *testing.T, h *harness, id string, files map[string]string, asDevice func(image string) string, options ...string) directVolume {
	t.Helper()
	testutil.RequiresTool(t, "mkfs.ext4")
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(src, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	v := directVolume{image: testutil.DiskImage(t, dir, 16, src), volume: filepath.Join(dir, "volume")}
	if err := os.Mkdir(v.volume, 0o755); err != nil {
		t.Fatal(err)
	}
	device := v.image
	if asDevice != nil {
		device = asDevice(v.image)
	}
	rec := map[string]any{"device": device, "fstype": "ext4"}
	if len(options) > 0 {
		rec["options"] = options
	}
	info, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	h.ok("direct-volume", "add", "--volume-path", v.volume, "--mount-info", string(info))
	t.Cleanup(func() { h.ok("direct-volume", "remove", "--volume-path", v.volume) })
	b := h.bundle([]string{"sleep", "1000"}, func(s *specs.Spec) {
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/data", Type: "bind", Source: v.volume, Options: []string{"rbind", "rw"}})
	})
	_, v.remove = h.created(b, id)
	h.ok("start", id)
	return v
}
