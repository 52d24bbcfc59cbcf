package nodeinstall

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// DetectVersion is the config version the containerd binary bin reads natively, from its
// `--version`: 2 for containerd 1.x, 3 for 2.x.
func DetectVersion(ctx context.Context, bin string) (int64, error) {
	out, err := exec.CommandContext(ctx, bin, "--version").Output()
	if err != nil {
		return 0, fmt.Errorf("%s --version: %w", bin, err)
	}
	return versionFromRelease(string(out))
}

// versionFromRelease reads `containerd --version` output, e.g. "containerd
// github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1" or "containerd
// github.com/containerd/containerd/v2 v2.2.9".
func versionFromRelease(out string) (int64, error) {
	f := strings.Fields(out)
	if len(f) < 3 || f[0] != "containerd" {
		return 0, fmt.Errorf("containerd --version printed %q: want \"containerd PACKAGE VERSION ...\"", strings.TrimSpace(out))
	}
	rel := strings.TrimPrefix(f[2], "v")
	major, err := strconv.Atoi(strings.SplitN(rel, ".", 2)[0])
	if err != nil {
		return 0, fmt.Errorf("containerd release %q: %w", f[2], err)
	}
	switch {
	case major == 1:
		return 2, nil
	case major >= 2:
		return 3, nil
	}
	return 0, fmt.Errorf("containerd release %s: vessel install knows containerd 1.6 and later", f[2])
}
