package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli/v2"

	"github.com/vessel-containers/vessel/internal/bundle"
)

func specCommand() *cli.Command {
	return &cli.Command{
		Name:  "spec",
		Usage: "create a new specification file",
		Description: `The spec command writes a starter config.json into the bundle directory (the current
directory by default), as "runc spec" does: process "sh" with a terminal, root "rootfs".
It refuses to overwrite an existing config.json.

--rootless writes a spec for a container in a user namespace: the current user is mapped
to root, uid= and gid= mount options are dropped and the resource limits removed. Unlike
runc, the network namespace and the sysfs mount stay: the container's network namespace
lives in its VM, where the user namespace owns it.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "bundle", Aliases: []string{"b"}, Usage: "path to the root of the bundle directory"},
			&cli.BoolFlag{Name: "rootless", Usage: "generate a configuration for a rootless container"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return fmt.Errorf("spec takes no arguments (got %d)", c.NArg())
			}
			dir := c.String("bundle")
			if dir == "" {
				dir = "."
			}
			if _, err := os.Stat(filepath.Join(dir, "config.json")); err == nil {
				return errors.New("File config.json exists. Remove it first") //nolint:staticcheck // runc's message, word for word
			}
			spec := bundle.RuncSpec([]string{"sh"}, true)
			if c.Bool("rootless") {
				toRootless(spec, uint32(os.Geteuid()), uint32(os.Getegid()))
			}
			return bundle.WriteSpec(dir, spec)
		},
	}
}

// toRootless turns a default spec into one for a rootless container: a user namespace
// mapping uid and gid to root, no uid=/gid= mount options, no resource limits.
func toRootless(spec *specs.Spec, uid, gid uint32) {
	hasUserNS := false
	for _, ns := range spec.Linux.Namespaces {
		hasUserNS = hasUserNS || ns.Type == specs.UserNamespace
	}
	if !hasUserNS {
		spec.Linux.Namespaces = append(spec.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
	}
	spec.Linux.UIDMappings = []specs.LinuxIDMapping{{HostID: uid, ContainerID: 0, Size: 1}}
	spec.Linux.GIDMappings = []specs.LinuxIDMapping{{HostID: gid, ContainerID: 0, Size: 1}}
	for i, m := range spec.Mounts {
		var opts []string
		for _, o := range m.Options {
			if !strings.HasPrefix(o, "gid=") && !strings.HasPrefix(o, "uid=") {
				opts = append(opts, o)
			}
		}
		spec.Mounts[i].Options = opts
	}
	spec.Linux.Resources = nil
}
