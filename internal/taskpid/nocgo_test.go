//go:build !cgo

package taskpid

import (
	"testing"

	"github.com/containerd/errdefs"
)

func TestStartRefusedWithoutCgo(t *testing.T) {
	if _, err := Start(nil, "x"); !errdefs.IsNotImplemented(err) {
		t.Fatalf("Start in a binary built without cgo: %v, want ErrNotImplemented", err)
	}
}
