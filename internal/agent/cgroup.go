//go:build linux

package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
)

// containerCgroups places containers' cgroups at the paths their specs name
// (linux.cgroupsPath, which the host has already mapped to a guest cgroupfs path), as runc
// places them on a host. It refuses a path another container's cgroup holds, contains or
// lies in, makes the missing directories of the path, and removes those it made once no
// container needs them.
type containerCgroups struct {
	// root is the cgroup v2 mount; paths are relative to it.
	root string
	// reserved is the parent of the cgroups the agent names itself: refused to specs.
	reserved string

	// mu guards owners and made.
	mu sync.Mutex
	// owners maps each claimed cgroup path to its container.
	owners map[string]string
	// made holds the directories (cgroup paths) made for claimed paths and not yet removed.
	made map[string]bool
}

func newContainerCgroups(root, reserved string) *containerCgroups {
	return &containerCgroups{root: root, reserved: reserved, owners: make(map[string]string), made: make(map[string]bool)}
}

// claim takes cgroup path p for container id and makes its missing directories, the
// container's own included (so that a sibling's release cannot remove a shared parent
// before libcontainer enters it). release undoes it.
func (g *containerCgroups) claim(id, p string) error {
	if !path.IsAbs(p) || path.Clean(p) != p || p == "/" {
		return fmt.Errorf("%w: oci_spec.linux.cgroupsPath %q: want a clean absolute cgroup path below the root", errdefs.ErrInvalidArgument, p)
	}
	if within(p, g.reserved) {
		return fmt.Errorf("%w: oci_spec.linux.cgroupsPath %q: %s holds the cgroups of containers without a cgroupsPath", errdefs.ErrInvalidArgument, p, g.reserved)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for q, other := range g.owners {
		switch {
		case q == p:
			return fmt.Errorf("%w: oci_spec.linux.cgroupsPath %q is the cgroup of container %q", errdefs.ErrAlreadyExists, p, other)
		case within(q, p):
			return fmt.Errorf("%w: oci_spec.linux.cgroupsPath %q contains the cgroup %s of container %q", errdefs.ErrAlreadyExists, p, q, other)
		case within(p, q):
			return fmt.Errorf("%w: oci_spec.linux.cgroupsPath %q is inside the cgroup %s of container %q", errdefs.ErrAlreadyExists, p, q, other)
		}
	}
	var made []string
	dir := "/"
	for _, name := range strings.Split(p[1:], "/") {
		dir = path.Join(dir, name)
		err := os.Mkdir(filepath.Join(g.root, dir), 0o755)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			slices.Reverse(made)
			_ = g.removeMade(made) // best effort: the error above is what failed
			return fmt.Errorf("cgroup %s of container %q: %w", p, id, err)
		}
		made = append(made, dir)
		g.made[dir] = true
	}
	g.owners[p] = id
	return nil
}

// release gives up cgroup path p of container id (after libcontainer removed the container's
// cgroup) and removes the directories claim made for it that are now empty: those of other
// containers' paths stay while they hold cgroups.
func (g *containerCgroups) release(ctx context.Context, id, p string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.owners[p] != id {
		return
	}
	delete(g.owners, p)
	var dirs []string
	for dir := p; dir != "/"; dir = path.Dir(dir) {
		if g.made[dir] {
			dirs = append(dirs, dir)
		}
	}
	if err := g.removeMade(dirs); err != nil {
		log.G(ctx).WithError(err).Debug("cgroup directories left in place")
	}
}

// removeMade removes the made directories dirs, deepest first, up to the first that is
// not empty or still claimed.
//
// Preconditions: g.mu is held; dirs are ordered deepest first.
func (g *containerCgroups) removeMade(dirs []string) error {
	for _, dir := range dirs {
		if _, ok := g.owners[dir]; ok {
			return nil
		}
		err := os.Remove(filepath.Join(g.root, dir))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove cgroup %s: %w", dir, err)
		}
		delete(g.made, dir)
	}
	return nil
}

// within reports whether cgroup path p is dir or below it.
func within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}
