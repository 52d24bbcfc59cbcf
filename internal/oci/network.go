package oci

import (
	"fmt"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/vessel-containers/vessel/internal/config"
	"github.com/vessel-containers/vessel/internal/network"
)

// networkPlan decides how the sandbox's VM joins the pod network: the network namespace
// the spec names (linux.namespaces, type network, with a path: the one the manager set up),
// attached with runtime.internetworking_model, with vhost-net unless
// hypervisor.disable_vhost_net. A spec asking for a new network namespace without a path
// gets one, as runc would make it: the sandbox makes an empty namespace, which the manager
// fills from a hook (nerdctl runs CNI from createRuntime) and Vessel follows by rescanning;
// with the none model nothing is made. runtime.disable_new_netns attaches nothing either
// and needs the none model.
func networkPlan(c *config.Config, spec *specs.Spec) (network.Config, error) {
	model, err := network.ParseModel(c.Runtime.InternetworkingModel)
	if err != nil {
		return network.Config{}, fmt.Errorf("runtime.%w", err)
	}
	if c.Runtime.DisableNewNetNS {
		if model != network.ModelNone {
			return network.Config{}, fmt.Errorf("runtime.disable_new_netns needs runtime.internetworking_model = \"none\", not %q: %w",
				model, errdefs.ErrInvalidArgument)
		}
		return network.Config{Model: network.ModelNone}, nil
	}
	plan := network.Config{Model: model, VhostNet: !c.Hypervisor.DisableVhostNet}
	if spec.Linux != nil {
		for _, ns := range spec.Linux.Namespaces {
			if ns.Type == specs.NetworkNamespace {
				plan.NetNS = ns.Path
				plan.NewNetNS = ns.Path == "" && model != network.ModelNone
			}
		}
	}
	return plan, nil
}
