package testutil

import (
	"context"
	"testing"
	"time"
)

// TestBusyboxImageWithRunc checks the test harness itself: the locally built image imports
// into a private containerd and runs under runc.
func TestBusyboxImageWithRunc(t *testing.T) {
	RequiresIntegration(t)
	RequiresRoot(t)
	ctd := StartContainerd(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := ctd.Ctr(ctx, "image", "import", "--all-platforms", BuildBusyboxImage(t)); err != nil {
		t.Fatal(err)
	}
	out, err := ctd.Ctr(ctx, "run", "--rm", "--runtime", "io.containerd.runc.v2", BusyboxImageRef, "harness", "echo", "hi")
	if err != nil {
		t.Fatal(err)
	}
	if out != "hi\n" {
		t.Errorf("got %q, want \"hi\\n\"", out)
	}
}
