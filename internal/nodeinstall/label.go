package nodeinstall

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// The node label that says Vessel is installed on a node: the RuntimeClass's
// scheduling.nodeSelector (deploy/kubernetes/runtimeclass.yaml) selects it.
const (
	NodeLabelKey   = "vessel.io/runtime"
	NodeLabelValue = "true"
)

// LabelArgs are the kubectl arguments that label node as having Vessel installed.
func LabelArgs(node string) []string {
	return []string{"label", "node", node, NodeLabelKey + "=" + NodeLabelValue, "--overwrite"}
}

// UnlabelArgs are the kubectl arguments that take the label off node.
func UnlabelArgs(node string) []string {
	return []string{"label", "node", node, NodeLabelKey + "-"}
}

// Kubectl runs the kubectl binary (a name looked up in PATH, or a path) with args.
func Kubectl(ctx context.Context, kubectl string, args []string) error {
	path, err := exec.LookPath(kubectl)
	if err != nil {
		return fmt.Errorf("labelling the node needs kubectl: %q not found (--kubectl names it): %w", kubectl, err)
	}
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", kubectl, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}
