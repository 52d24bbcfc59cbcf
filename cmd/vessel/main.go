// Binary vessel is the runc-compatible OCI runtime CLI of Vessel plus its admin verbs
// (check, env, image build).
package main

import (
	"context"
	"os"

	"github.com/vessel-containers/vessel/internal/cli"
	"github.com/vessel-containers/vessel/internal/jail"
)

func main() {
	jail.Main() // the VMM's confinement: returns unless started as the jail entry
	os.Exit(cli.Run(context.Background(), os.Args))
}
