//go:build linux

package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func exists(t *testing.T, root, p string) bool {
	t.Helper()
	_, err := os.Stat(filepath.Join(root, p))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

// Two containers of a pod share the parent the first one made; it goes with the last one.
// A directory that was there before stays.
func TestContainerCgroupsPod(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "kubepods"), 0o755); err != nil {
		t.Fatal(err)
	}
	g := newContainerCgroups(root, "/vessel")
	a, b := "/kubepods/besteffort/pod1/a", "/kubepods/besteffort/pod1/b"
	if err := g.claim("a", a); err != nil {
		t.Fatal(err)
	}
	if err := g.claim("b", b); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{a, b} {
		if !exists(t, root, p) {
			t.Fatalf("cgroup %s not made", p)
		}
	}
	g.release(ctx, "a", a)
	if exists(t, root, a) {
		t.Errorf("cgroup %s of a removed container is left", a)
	}
	if !exists(t, root, "/kubepods/besteffort/pod1") {
		t.Fatal("the pod's parent cgroup went while container b is in it")
	}
	// A release by a container that does not own the path changes nothing.
	g.release(ctx, "a", b)
	if !exists(t, root, b) {
		t.Fatal("a release by another container removed b's cgroup")
	}
	g.release(ctx, "b", b)
	for _, p := range []string{b, "/kubepods/besteffort/pod1", "/kubepods/besteffort"} {
		if exists(t, root, p) {
			t.Errorf("made cgroup %s left after its last container went", p)
		}
	}
	if !exists(t, root, "/kubepods") {
		t.Error("cgroup /kubepods, there before, was removed")
	}
	if len(g.owners) != 0 || len(g.made) != 0 {
		t.Errorf("state left: owners %v, made %v", g.owners, g.made)
	}
}

// A parent that holds something the agent did not put there (a directory libcontainer or
// a user made) stays; the claim state forgets only what it removed.
func TestContainerCgroupsBusyParent(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	g := newContainerCgroups(root, "/vessel")
	if err := g.claim("a", "/p/a"); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, "p", "other"), 0o755); err != nil {
		t.Fatal(err)
	}
	g.release(ctx, "a", "/p/a")
	if exists(t, root, "/p/a") || !exists(t, root, "/p") {
		t.Fatalf("want /p/a removed and /p (not empty) kept")
	}
	if !g.made["/p"] || g.made["/p/a"] {
		t.Errorf("made = %v, want only /p", g.made)
	}
}

func TestContainerCgroupsRefused(t *testing.T) {
	root := t.TempDir()
	g := newContainerCgroups(root, "/vessel")
	if err := g.claim("a", "/pod/a"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path, want string
		is         error
	}{
		{"/pod/a", `is the cgroup of container "a"`, errdefs.ErrAlreadyExists},
		{"/pod", `contains the cgroup /pod/a of container "a"`, errdefs.ErrAlreadyExists},
		{"/pod/a/sub", `is inside the cgroup /pod/a of container "a"`, errdefs.ErrAlreadyExists},
		{"/vessel", "holds the cgroups of containers without a cgroupsPath", errdefs.ErrInvalidArgument},
		{"/vessel/x", "holds the cgroups of containers without a cgroupsPath", errdefs.ErrInvalidArgument},
		{"/", "clean absolute", errdefs.ErrInvalidArgument},
		{"pod/b", "clean absolute", errdefs.ErrInvalidArgument},
		{"/pod/../b", "clean absolute", errdefs.ErrInvalidArgument},
		{"/pod/b/", "clean absolute", errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.path, func(t *testing.T) {
			err := g.claim("b", tc.path)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, tc.is) {
				t.Fatalf("claim %s: %v; want %v with %q", tc.path, err, tc.is, tc.want)
			}
		})
	}
	// A sibling and a path that only shares a name prefix are fine.
	for _, p := range []string{"/pod/b", "/pod/ab", "/vesselx"} {
		if err := g.claim(p, p); err != nil {
			t.Errorf("claim %s: %v", p, err)
		}
	}
}

// A claim whose directory cannot be made removes those it made and claims nothing.
func TestContainerCgroupsMkdirFails(t *testing.T) {
	root := t.TempDir()
	g := newContainerCgroups(root, "/vessel")
	long := "/new/deep/" + strings.Repeat("x", 300) // a name longer than NAME_MAX
	if err := g.claim("a", long); err == nil || !strings.Contains(err.Error(), `container "a"`) {
		t.Fatalf("claim %s: %v; want an error naming the container", long, err)
	}
	if exists(t, root, "/new") {
		t.Error("directory /new left after a failed claim")
	}
	if len(g.owners) != 0 || len(g.made) != 0 {
		t.Errorf("state left: owners %v, made %v", g.owners, g.made)
	}
}
