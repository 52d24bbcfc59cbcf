// Package bundle creates OCI bundles: a default runtime spec (as `runc spec` writes) and the
// built-in busybox root filesystem `vessel run` uses when no bundle is given.
package bundle

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// BusyboxPath is where Debian's busybox-static installs the static binary.
const BusyboxPath = "/bin/busybox"

// BuildBusyboxRootfs fills dir with a minimal root filesystem: the static busybox binary,
// one symlink per applet in /bin, and the usual empty top-level directories plus
// /etc/passwd and /etc/group with root, nobody and a uid 1000 user.
func BuildBusyboxRootfs(dir, busybox string) error {
	if busybox == "" {
		busybox = BusyboxPath
	}
	for _, d := range []string{"bin", "dev", "etc", "proc", "sys", "tmp", "root", "home/user", "run", "var", "usr"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return fmt.Errorf("rootfs dir %s: %w", d, err)
		}
	}
	if err := os.Chmod(filepath.Join(dir, "tmp"), 0o1777); err != nil {
		return fmt.Errorf("chmod tmp: %w", err)
	}
	data, err := os.ReadFile(busybox)
	if err != nil {
		return fmt.Errorf("read busybox (install busybox-static): %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "busybox"), data, 0o755); err != nil {
		return fmt.Errorf("write busybox: %w", err)
	}
	out, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		return fmt.Errorf("busybox --list: %w", err)
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" {
			continue
		}
		link := filepath.Join(dir, "bin", applet)
		if err := os.Symlink("busybox", link); err != nil && !os.IsExist(err) {
			return fmt.Errorf("applet %s: %w", applet, err)
		}
	}
	files := map[string]string{ //nolint:gosec // account files of a test rootfs, no secrets
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
		"etc/group":  "root:x:0:\nuser:x:1000:\nnobody:x:65534:\n",
		"etc/hosts":  "127.0.0.1 localhost\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	return nil
}
