//go:build linux

package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// readonlySpecialFiles turns the spec's read-only paths that are special files (device
// nodes, sockets, FIFOs) in the container's root file system into read-only bind mounts
// of themselves. libcontainer makes a read-only path read-only by reading its mount's
// flags with statfs(2) on the path itself, and a file server answers statfs on a special
// file by opening it on the host (QEMU's 9p opens a device node there and fails with
// ENXIO); a bind mount is made read-only without that statfs. The nosuid, nodev and noexec
// flags of the directory holding the file are kept, as libcontainer keeps them. Paths
// that are missing, or not special files, stay read-only paths.
func readonlySpecialFiles(spec *specs.Spec) error {
	if spec.Linux == nil || spec.Root == nil || !filepath.IsAbs(spec.Root.Path) {
		return nil
	}
	var keep []string
	for i, p := range spec.Linux.ReadonlyPaths {
		if !filepath.IsAbs(p) {
			keep = append(keep, p)
			continue
		}
		hostPath, err := securejoin.SecureJoin(spec.Root.Path, p)
		if err != nil {
			return fmt.Errorf("oci_spec.linux.readonlyPaths[%d] (%s): %w", i, p, err)
		}
		fi, err := os.Lstat(hostPath)
		if errors.Is(err, fs.ErrNotExist) || err == nil && fi.Mode()&(fs.ModeDevice|fs.ModeNamedPipe|fs.ModeSocket) == 0 {
			keep = append(keep, p)
			continue
		}
		if err != nil {
			return fmt.Errorf("oci_spec.linux.readonlyPaths[%d] (%s): %w", i, p, err)
		}
		var st unix.Statfs_t
		if err := unix.Statfs(filepath.Dir(hostPath), &st); err != nil {
			return fmt.Errorf("oci_spec.linux.readonlyPaths[%d] (%s): statfs of its directory: %w", i, p, err)
		}
		opts := []string{"bind", "ro"}
		for _, f := range []struct {
			flag int64
			opt  string
		}{{unix.ST_NOSUID, "nosuid"}, {unix.ST_NODEV, "nodev"}, {unix.ST_NOEXEC, "noexec"}} {
			if st.Flags&f.flag != 0 {
				opts = append(opts, f.opt)
			}
		}
		spec.Mounts = append(spec.Mounts, specs.Mount{Destination: p, Type: "bind", Source: hostPath, Options: opts})
	}
	if len(keep) != len(spec.Linux.ReadonlyPaths) {
		spec.Linux.ReadonlyPaths = slices.Clip(keep)
	}
	return nil
}
