package testutil

import (
	"testing"

	"github.com/vessel-containers/vessel/internal/busyboximage"
)

// BusyboxImageRef is the name the local busybox image is imported under.
const BusyboxImageRef = busyboximage.TestRef

// BuildBusyboxImage writes an OCI image archive (oci-layout, index.json, blobs) holding
// one layer with the busybox rootfs, named BusyboxImageRef, and returns its path. No
// registry is involved: tests import it with `ctr image import`.
func BuildBusyboxImage(t testing.TB) string {
	t.Helper()
	path, err := busyboximage.Build(t.TempDir(), BusyboxImageRef)
	if err != nil {
		t.Fatal(err)
	}
	return path
}
