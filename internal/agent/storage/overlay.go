//go:build linux

package storage

import (
	"fmt"
	"os"
	"strings"

	"github.com/containerd/errdefs"
)

// overlayDirs opens the directories an overlay's data names (lowerdir, colon-separated,
// upperdir and workdir), each under the root without following symlinks (OpenDir), making
// upperdir and workdir when missing, and returns them with the data rewritten to name the
// opened directories (/proc/self/fd/N), so that a symlink planted on a disk cannot point
// the overlay elsewhere. The caller closes the directories after the mount.
func (m *Manager) overlayDirs(data string) (_ []*os.File, _ string, retErr error) {
	var dirs []*os.File
	defer func() {
		if retErr != nil {
			closeAll(dirs)
		}
	}()
	open := func(key, p string, create bool) (string, error) {
		rel, err := Rel(m.root, p)
		if err != nil {
			return "", fmt.Errorf("overlay storage: %s: %w", key, err)
		}
		d, err := OpenDir(m.root, rel, 0o755, create)
		if err != nil {
			return "", fmt.Errorf("overlay storage: %s: %w", key, err)
		}
		dirs = append(dirs, d)
		return FdPath(d), nil
	}
	var out []string
	for _, o := range strings.Split(data, ",") {
		key, val, _ := strings.Cut(o, "=")
		switch key {
		case "lowerdir":
			var lowers []string
			for _, p := range strings.Split(val, ":") {
				fd, err := open(key, p, false)
				if err != nil {
					return nil, "", err
				}
				lowers = append(lowers, fd)
			}
			o = key + "=" + strings.Join(lowers, ":")
		case "upperdir", "workdir":
			fd, err := open(key, val, true)
			if err != nil {
				return nil, "", err
			}
			o = key + "=" + fd
		}
		out = append(out, o)
	}
	if len(dirs) == 0 {
		return nil, "", fmt.Errorf("%w: overlay storage: no lowerdir option", errdefs.ErrInvalidArgument)
	}
	return dirs, strings.Join(out, ","), nil
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}
