//go:build !cgo

package taskpid

import (
	"fmt"

	"github.com/containerd/errdefs"
)

// canStart refuses: the stand-in is the C constructor of standin_cgo.go, which a binary
// built without cgo lacks (the shim, the only starter, needs cgo anyway: runc's
// libcontainer packages it uses do not build without it).
func canStart() error {
	return fmt.Errorf("start a task stand-in: this binary is built without cgo, and the stand-in is internal/taskpid's C constructor: %w", errdefs.ErrNotImplemented)
}
