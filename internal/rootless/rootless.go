// Package rootless tells whether Vessel runs without real root on the host: as an
// unprivileged user, or as uid 0 of a user namespace that is not the host's (rootless podman
// and rootlesskit start their OCI runtime and shims that way). Vessel then runs in rootless
// mode (docs/rootless.md), as runc's --rootless=auto does.
package rootless

import (
	"fmt"
	"os"
	"strings"
)

// Detect reports whether the calling process lacks real root on the host, and why.
func Detect() (bool, string) {
	return detect(os.Geteuid(), "/proc/self/uid_map")
}

// detect is Detect with the effective uid and the uid_map file given.
func detect(euid int, uidMap string) (bool, string) {
	if euid != 0 {
		return true, fmt.Sprintf("running as uid %d", euid)
	}
	b, err := os.ReadFile(uidMap)
	if err != nil {
		// No /proc/self/uid_map: a kernel without user namespaces, so this is the host's root.
		return false, ""
	}
	m := strings.Join(strings.Fields(string(b)), " ")
	if m == "0 0 4294967295" {
		return false, ""
	}
	return true, fmt.Sprintf("running in a user namespace (uid_map %q)", m)
}

// RuntimeDir is the default state directory of a rootless user: $XDG_RUNTIME_DIR/vessel, as
// runc uses $XDG_RUNTIME_DIR/runc. It is an error when XDG_RUNTIME_DIR is not set.
func RuntimeDir(getenv func(string) string) (string, error) {
	dir := getenv("XDG_RUNTIME_DIR")
	if dir == "" {
		return "", fmt.Errorf("rootless: XDG_RUNTIME_DIR is not set: set it (to a directory only this user can write, such as /run/user/%d) or give --root", os.Getuid())
	}
	if !strings.HasPrefix(dir, "/") {
		return "", fmt.Errorf("rootless: XDG_RUNTIME_DIR %q is not an absolute path", dir)
	}
	return dir + "/vessel", nil
}
