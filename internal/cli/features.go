package cli

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/vessel-containers/vessel/internal/shimclient"
)

func featuresCommand() *cli.Command {
	return &cli.Command{
		Name:  "features",
		Usage: "show the enabled features",
		Description: `The features command prints what this runtime supports as the runtime-spec's features
JSON, as the shim binary reports it to containerd (containerd-shim-vessel-v2 -info): hooks
run on the host; the guest agent creates containers with runc's libcontainer (its mount
options, namespaces, capabilities and seccomp names) and cgroup v2; the VM is booted by
the hypervisor drivers built into the shim (annotation io.vessel.hypervisors); the
configuration annotations are listed as potentially unsafe.`,
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return fmt.Errorf("features takes no arguments (got %d)", c.NArg())
			}
			bin, err := shimclient.FindBinary()
			if err != nil {
				return err
			}
			f, err := shimclient.Info(c.Context, bin)
			if err != nil {
				return err
			}
			return writeJSON(c.App.Writer, f)
		},
	}
}
