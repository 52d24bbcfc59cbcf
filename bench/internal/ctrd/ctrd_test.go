package ctrd

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vessel-containers/vessel/internal/busyboximage"
	"github.com/vessel-containers/vessel/internal/testutil"
)

// TestStopLeavesNothing starts a daemon, leaves a runc container running and checks that
// Stop removes it, its shim, its cgroups and the daemon's directory.
func TestStopLeavesNothing(t *testing.T) {
	testutil.RequiresIntegration(t)
	testutil.RequiresRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d, err := Start(ctx, Options{BinDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = d.Stop(context.Background())
		}
	})
	archive, err := busyboximage.Build(t.TempDir(), busyboximage.BenchRef)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Ctr(ctx, "image", "import", archive); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Ctr(ctx, "run", "-d", "--fifo-dir", d.FIFODir, "--runc-root", d.RuncRoot, busyboximage.BenchRef, "left", "sleep", "1000"); err != nil {
		t.Fatal(err)
	}
	stopped = true
	if err := d.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(d.Dir); !os.IsNotExist(err) {
		t.Errorf("daemon dir %s still exists (%v)", d.Dir, err)
	}
	if cgs := namespaceCgroups(d.Namespace); len(cgs) > 0 {
		t.Errorf("cgroups left: %v", cgs)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		data, err := os.ReadFile(p)
		if err == nil && strings.Contains(string(data), d.Dir) {
			t.Errorf("process %s still refers to %s: %q", p, d.Dir, data)
		}
	}
}
