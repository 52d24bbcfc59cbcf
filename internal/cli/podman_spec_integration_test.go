package cli_test

import (
	"strings"
	"testing"

	"github.com/vessel-containers/vessel/internal/testutil"
)

// TestPodmanSpecFields runs podman's own specs for a tmpfs with options, a FIFO and a
// terminal: each works in the VM as with runc.
func TestPodmanSpecFields(t *testing.T) {
	h := newHarness(t)
	p := newPodman(t, h)
	p.ok("load", "-i", testutil.BuildBusyboxImage(t))
	img := testutil.BusyboxImageRef
	run := []string{"run", "--rm", "--network", "none"}
	out := p.ok(append(run, "--tmpfs", "/scratch:rw,size=1m,mode=1770", img, "grep", "/scratch", "/proc/mounts")...)
	if !strings.Contains(out, "tmpfs /scratch tmpfs rw,nosuid,nodev,") || !strings.Contains(out, "size=1024k,mode=1770") {
		t.Errorf("podman --tmpfs: %q", out)
	}
	if out, code := p.run(append(run, "-t", img, "sh", "-c", "ls -l /dev/console; echo x > /dev/console && echo console-ok")...); code != 0 || !strings.Contains(out, "console-ok") {
		t.Errorf("podman run -t with /dev/console: exit %d, %q", code, out)
	}
}
