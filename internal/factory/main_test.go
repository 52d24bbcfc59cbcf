package factory_test

import (
	"os"
	"testing"

	"github.com/vessel-containers/vessel/internal/jail"
)

// TestMain lets the test binary double as the jail entry that the qemu driver starts
// QEMU through.
func TestMain(m *testing.M) {
	jail.Main()
	os.Exit(m.Run())
}
