package shim_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/vessel-containers/vessel/internal/testutil"
)

// loopDevice makes a loop device over a new file of sizeMiB (ext4 holding files, when
// files is not nil) and detaches it at the end of the test. Call it before newHarness, so
// that containerd and the VMs are gone when it is detached.
func loopDevice(t *testing.T, sizeMiB int64, files map[string]string) string {
	t.Helper()
	testutil.RequiresRoot(t)
	for _, bin := range []string{"losetup", "mkfs.ext4"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s is not installed: %v", bin, err)
		}
	}
	dir := t.TempDir()
	src := ""
	if files != nil {
		src = filepath.Join(dir, "src")
		if err := os.Mkdir(src, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, content := range files {
			if err := os.WriteFile(filepath.Join(src, name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return testutil.LoopDevice(t, testutil.DiskImage(t, dir, sizeMiB, src))
}

// TestCtrRunBlockDevices runs a container through containerd with a host block device
// (`ctr run --device`) and an ext4 volume on another (`--mount type=ext4`): the container
// sees the first as a block device at its path and the second's files under an ext4 mount.
func TestCtrRunBlockDevices(t *testing.T) {
	raw := loopDevice(t, 8, nil)
	vol := loopDevice(t, 16, map[string]string{"hello": "hello from the host\n"})
	h := newHarness(t)
	script := "stat -c %F " + raw + "; cat /data/hello; grep ' /data ' /proc/self/mounts | cut -d' ' -f3"
	out, code := h.runFlags([]string{"--device", raw, "--mount", "type=ext4,src=" + vol + ",dst=/data,options=rw"}, "blk", "sh", "-c", script)
	if want := "block special file\nhello from the host\next4\n"; code != 0 || out != want {
		t.Errorf("got %q exit %d, want %q 0", out, code, want)
	}
}
