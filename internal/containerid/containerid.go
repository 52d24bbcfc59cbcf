// Package containerid is the one rule for sandbox, container and exec ids, shared by the
// host (shim, CLI, sandbox) and the guest agent. The ids become directory, socket, cgroup
// and QEMU -name components on both sides, so the rule is narrow: 1-128 letters, digits,
// '_', '.', '+' and '-', starting with a letter or digit (no "." or "..", no leading '-').
// The package is a leaf: the guest agent imports it.
package containerid

import (
	"fmt"
	"regexp"

	"github.com/containerd/errdefs"
)

// MaxLen is the longest id accepted.
const MaxLen = 128

var pattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$`)

// Validate reports whether id can name a sandbox, container or exec process. The error
// wraps errdefs.ErrInvalidArgument.
func Validate(id string) error {
	if !pattern.MatchString(id) {
		return fmt.Errorf("id %q: want 1-%d letters, digits, '_', '.', '+' or '-', starting with a letter or digit: %w",
			id, MaxLen, errdefs.ErrInvalidArgument)
	}
	return nil
}
