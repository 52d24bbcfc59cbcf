package oci

import (
	"fmt"
	"path"
	"strings"
)

// GuestCgroupPath is the cgroup v2 path in the guest, below the guest's cgroup root, of a
// container whose spec's linux.cgroupsPath is p: the path runc would give the container's
// cgroup on a host, so that /proc/self/cgroup in the container shows what it shows with
// runc. An empty p gives "": the agent then names the cgroup itself.
//
//   - A cgroupfs path is cleaned as runc cleans it: ".." never climbs above the root, and a
//     relative path is taken from the root (runc takes it from the parent of its own
//     cgroup; the agent runs in the guest's root cgroup).
//   - systemd's "slice:prefix:name" (three fields, no slash) becomes the cgroup systemd
//     would make for runc's systemd driver, which the guest (without systemd) makes
//     itself: the slice expanded into its hierarchy ("a-b.slice" is
//     /a.slice/a-b.slice, "-.slice" the root, empty system.slice), then the unit
//     "prefix-name.scope", or name itself when it ends in ".slice". The form is recognised
//     by its shape whatever the host's cgroup driver, as containerd's CRI writes it for a
//     pod parent ending in ".slice".
//
// The root cgroup itself is refused: the container's processes cannot share it with the
// agent's.
func GuestCgroupPath(p string) (string, error) {
	if p == "" {
		return "", nil
	}
	var g string
	if parts := strings.Split(p, ":"); len(parts) == 3 && !strings.Contains(p, "/") {
		slice, prefix, name := parts[0], parts[1], parts[2]
		if name == "" {
			return "", fmt.Errorf("linux.cgroupsPath %q: systemd form slice:prefix:name with an empty name", p)
		}
		if slice == "" {
			slice = "system.slice"
		}
		dir, err := expandSlice(slice)
		if err != nil {
			return "", fmt.Errorf("linux.cgroupsPath %q: %w", p, err)
		}
		unit := name
		if !strings.HasSuffix(name, ".slice") {
			unit = prefix + "-" + name + ".scope"
		}
		g = path.Join(dir, unit)
	} else {
		g = path.Clean("/" + p)
	}
	if g == "/" {
		return "", fmt.Errorf("linux.cgroupsPath %q names the root cgroup", p)
	}
	return g, nil
}

// expandSlice is the cgroup path of a systemd slice, as systemd nests slices by the dashes
// in their names: "a-b-c.slice" is /a.slice/a-b.slice/a-b-c.slice; "-.slice" is the root.
func expandSlice(slice string) (string, error) {
	const suffix = ".slice"
	name, ok := strings.CutSuffix(slice, suffix)
	if !ok || name == "" || strings.Contains(slice, "/") {
		return "", fmt.Errorf("slice %q is not a systemd slice name (name.slice, no slash)", slice)
	}
	if name == "-" {
		return "/", nil
	}
	var dir, prefix string
	for _, comp := range strings.Split(name, "-") {
		if comp == "" {
			return "", fmt.Errorf("slice %q has an empty component between dashes", slice)
		}
		dir += "/" + prefix + comp + suffix
		prefix += comp + "-"
	}
	return dir, nil
}
