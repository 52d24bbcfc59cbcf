package shim

import (
	"context"
	"fmt"
	"os"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/vessel-containers/vessel/internal/hooks"
	"github.com/vessel-containers/vessel/internal/network"
	"github.com/vessel-containers/vessel/internal/taskpid"
)

// ociHooks runs a container's OCI hooks on the host at the task API's points, as runc
// does at its verbs: prestart, createRuntime and createContainer at Create (once the
// container exists in the guest, before Create returns), poststart after Start, poststop
// at Delete. These run on the host (internal/hooks); startContainer hooks run in the
// guest, in the container (oci.GuestSpec). No process of the container lives on the host,
// so the state's pid is a host process that the shim starts in the pod's network
// namespace for as long as the hooks run (a task stand-in, internal/taskpid): nerdctl's
// createRuntime hook runs CNI in /proc/<pid>/ns/net, and a hook may look the pid up as a
// process (ps --pid). Without a pod network namespace (or once it is gone) it is the
// shim's pid, which the task API reports. The sandbox's container start rescans the
// namespace after the create-time hooks, so interfaces a hook added are hot-plugged
// before the container runs.
type ociHooks struct {
	spec   *specs.Spec
	id     string
	bundle string
	// netns is the pod's network namespace on the host; empty when the VM is in none.
	netns string
}

// newOCIHooks returns the hooks of spec for container id, nil when the spec has none or
// the program running the shim runs them itself (shimproto.Options.CallerRunsHooks).
func (s *service) newOCIHooks(spec *specs.Spec, id, bundle, netns string) *ociHooks {
	if s.callerRunsHooks || spec == nil || spec.Hooks == nil {
		return nil
	}
	return &ociHooks{spec: spec, id: id, bundle: bundle, netns: netns}
}

// run runs the hooks of kinds in order, with the container in status, and stops at the
// first failure. A nil ociHooks runs nothing.
func (h *ociHooks) run(ctx context.Context, status specs.ContainerState, kinds ...hooks.Kind) error {
	if h == nil {
		return nil
	}
	found := false
	for _, k := range kinds {
		found = found || len(hooks.Of(h.spec, k)) > 0
	}
	if !found {
		return nil
	}
	st := specs.State{
		Version: specs.Version, ID: h.id, Status: status, Pid: os.Getpid(), Bundle: h.bundle,
		Annotations: h.spec.Annotations,
	}
	// A namespace that is gone (with the sandbox, before poststop) leaves the shim's pid.
	if h.netns != "" {
		var inPod *taskpid.Process
		err := network.InNetNSPath(h.netns, func() error {
			var err error
			inPod, err = taskpid.Start(nil, h.id, "hooks")
			return err
		})
		switch {
		case err == nil:
			defer inPod.Stop()
			st.Pid = inPod.Pid()
		case !errdefs.IsNotFound(err):
			return fmt.Errorf("container %s: hooks: %w", h.id, err)
		}
	}
	for _, k := range kinds {
		if err := hooks.Run(ctx, k, hooks.Of(h.spec, k), st); err != nil {
			return fmt.Errorf("container %s: %w", h.id, err)
		}
	}
	return nil
}

// warn runs the hooks of kind k, whose failures the spec makes warnings (poststart,
// poststop).
func (h *ociHooks) warn(ctx context.Context, status specs.ContainerState, k hooks.Kind) {
	if err := h.run(ctx, status, k); err != nil {
		log.G(ctx).WithError(err).Warnf("%s hook failed", k)
	}
}
