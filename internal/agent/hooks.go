//go:build linux

package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"
)

// Guest OCI hooks, as Kata runs them: the directory the host names in CreateSandbox
// (guest_hook_path) has a subdirectory per hook type, prestart, poststart and poststop;
// every executable regular file in one is a hook of that type, run in name order with its
// path and the type as arguments and the container's state on stdin. They are guest
// programs (the guest image's, or a directory the guest has mounted), not the host's: the
// host's own hooks run on the host, and a spec that carries hooks is refused
// (checkGuestSpec). The directory is read at each CreateContainer, so hooks placed after
// the sandbox was created apply to the containers created after them; libcontainer runs
// them at their points (prestart before the container's root is switched, poststart once
// its init is created, poststop when it is destroyed).

// hookTypes are the subdirectories of a guest hook path, in the order runc defines.
var hookTypes = []string{"prestart", "poststart", "poststop"}

// checkHookPath checks guest_hook_path: empty, or a clean absolute path.
func checkHookPath(p string) error {
	if p == "" || (path.IsAbs(p) && path.Clean(p) == p) {
		return nil
	}
	return fmt.Errorf("%w: guest_hook_path %q is not a clean absolute guest path", errdefs.ErrInvalidArgument, p)
}

// guestHooks reads the hooks under dir. A missing dir or subdirectory has none.
func guestHooks(dir string) (*specs.Hooks, error) {
	if dir == "" {
		return nil, nil
	}
	found := map[string][]specs.Hook{}
	n := 0
	for _, typ := range hookTypes {
		sub := filepath.Join(dir, typ)
		entries, err := os.ReadDir(sub)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("guest hooks: %w", err)
		}
		sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
		for _, e := range entries {
			p := filepath.Join(sub, e.Name())
			st, err := os.Stat(p)
			if err != nil || !st.Mode().IsRegular() || st.Mode()&0o111 == 0 {
				continue // not an executable file: not a hook
			}
			found[typ] = append(found[typ], specs.Hook{Path: p, Args: []string{p, typ}})
			n++
		}
	}
	if n == 0 {
		return nil, nil
	}
	return &specs.Hooks{
		Prestart:  found["prestart"], //nolint:staticcheck // deprecated in the spec, still run by runc; Kata's guest hooks use it
		Poststart: found["poststart"],
		Poststop:  found["poststop"],
	}, nil
}

// hookCount is how many hooks of each type h has, for logs.
func hookCount(h *specs.Hooks) string {
	return fmt.Sprintf("prestart %d, poststart %d, poststop %d", len(h.Prestart), len(h.Poststart), len(h.Poststop)) //nolint:staticcheck // see guestHooks
}
