package shim_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vessel-containers/vessel/internal/sharefs"
	"github.com/vessel-containers/vessel/internal/testutil"
)

const runtimeName = "io.containerd.vessel.v2"

// harness is a containerd daemon with Vessel's shim on its PATH and the busybox image.
type harness struct {
	t      *testing.T
	ctd    *testutil.Containerd
	sbRoot string
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	testutil.RequiresVM(t)
	binDir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, "containerd-shim-vessel-v2"), "./cmd/containerd-shim-vessel-v2")
	cmd.Dir = testutil.RepoRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build shim: %v\n%s", err, out)
	}
	sbRoot, err := os.MkdirTemp("", "vsb")
	if err != nil {
		t.Fatal(err)
	}
	ctd := testutil.StartContainerd(t, binDir, "VESSEL_SANDBOX_ROOT="+sbRoot)
	h := &harness{t: t, ctd: ctd, sbRoot: sbRoot}
	t.Cleanup(func() {
		h.assertNoLeftovers()
		os.RemoveAll(sbRoot)
	})
	if _, err := ctd.Ctr(context.Background(), "image", "import", "--all-platforms", testutil.BuildBusyboxImage(t)); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *harness) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 3*time.Minute)
}

// run runs `ctr run --rm` and returns output and exit code.
func (h *harness) run(id string, args ...string) (string, int) {
	h.t.Helper()
	ctx, cancel := h.ctx()
	defer cancel()
	cmd := h.ctd.CtrCmd(ctx, append([]string{"run", "--rm", "--runtime", runtimeName, testutil.BusyboxImageRef, id}, args...)...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok { //nolint:errorlint // exec errors are not wrapped
		code = ee.ExitCode()
	} else if err != nil {
		h.t.Fatalf("ctr run: %v", err)
	}
	return string(out), code
}

// assertNoLeftovers checks no shim, QEMU, mount or sandbox state remains.
func (h *harness) assertNoLeftovers() {
	t := h.t
	for _, pat := range []string{"containerd-shim-vessel-v2", "vessel-"} {
		out, _ := exec.Command("pgrep", "-af", pat).Output()
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if line != "" && (strings.Contains(line, h.sbRoot) || strings.Contains(line, h.ctd.Address)) {
				t.Errorf("process left behind: %s", line)
			}
		}
	}
	if m, _ := sharefs.MountsUnder(h.sbRoot); len(m) > 0 {
		t.Errorf("mounts left: %v", m)
	}
	entries, _ := os.ReadDir(h.sbRoot)
	if len(entries) > 0 {
		t.Errorf("sandbox state left: %v", entries)
	}
}

func TestCtrRun(t *testing.T) {
	h := newHarness(t)
	out, code := h.run("hello", "echo", "hi")
	if code != 0 || out != "hi\n" {
		t.Fatalf("ctr run echo hi: got %q exit %d, want \"hi\\n\" 0", out, code)
	}
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"true"}, 0},
		{[]string{"sh", "-c", "exit 3"}, 3},
		{[]string{"sh", "-c", "kill -9 $$"}, 137},
	} {
		if _, code := h.run("code", tc.args...); code != tc.want {
			t.Errorf("%v: exit %d, want %d", tc.args, code, tc.want)
		}
	}
}
