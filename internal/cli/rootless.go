package cli

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/vessel-containers/vessel/internal/rootless"
)

// isRootless reads --rootless: "auto" (the default) is rootless when vessel runs as a user
// other than root or in a user namespace that is not the host's (rootless podman calls
// its runtime as uid 0 of its own user namespace), as runc decides.
func isRootless(c *cli.Context) (bool, error) {
	switch v := c.String("rootless"); v {
	case "true":
		return true, nil
	case "false":
		return false, nil
	case "auto", "":
		ok, _ := rootless.Detect()
		return ok, nil
	default:
		return false, fmt.Errorf("--rootless %q: want true, false or auto", v)
	}
}

// stateRoot is --root, absolute; without it, DefaultRoot, or $XDG_RUNTIME_DIR/vessel when
// rootless (runc uses $XDG_RUNTIME_DIR/runc).
func stateRoot(c *cli.Context) (string, error) {
	if c.IsSet("root") {
		root, err := filepath.Abs(c.String("root"))
		if err != nil {
			return "", fmt.Errorf("--root: %w", err)
		}
		return root, nil
	}
	rl, err := isRootless(c)
	if err != nil || !rl {
		return DefaultRoot, err
	}
	return rootless.RuntimeDir(os.Getenv) //nolint:wrapcheck // rootless names the variable
}
