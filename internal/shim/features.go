package shim

import (
	"runtime"
	"strings"

	// Registers the features type with typeurl, so that Info can encode it.
	_ "github.com/containerd/containerd/v2/core/runtime"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"

	"github.com/vessel-containers/vessel/internal/agent/libct/known"
	"github.com/vessel-containers/vessel/internal/config"
	"github.com/vessel-containers/vessel/internal/hooks"
	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/version"
)

// Features describes what this build runs, as the runtime-spec's features document: hooks
// run on the host; containers are created in the VM by the guest's libcontainer (its mount
// options, namespaces, capabilities and seccomp names); the VM is booted by the hypervisor
// drivers compiled into the binary; configuration annotations are the key table's. Info
// hands it to containerd, and `vessel features` prints it.
func Features() *features.Features {
	yes, no := true, false
	hookNames := make([]string, 0, len(hooks.Kinds))
	for _, k := range hooks.Kinds {
		hookNames = append(hookNames, string(k))
	}
	return &features.Features{
		OCIVersionMin: "1.0.0",
		OCIVersionMax: specs.Version,
		Hooks:         hookNames,
		MountOptions:  known.MountOptions(),
		Linux: &features.Linux{
			Namespaces:   known.Namespaces(),
			Capabilities: known.Capabilities(),
			Cgroup: &features.Cgroup{
				// The guest mounts cgroup v2 only; there is no systemd in the guest.
				V1: &no, V2: &yes, Systemd: &no, SystemdUser: &no, Rdma: &no,
			},
			Seccomp: &features.Seccomp{
				// The agent is built with libseccomp (the Makefile's AGENT_TAGS).
				Enabled:    &yes,
				Actions:    known.SeccompActions(),
				Operators:  known.SeccompOperators(),
				Archs:      known.SeccompArchs(),
				KnownFlags: known.SeccompFlags(),
			},
			// The guest kernel has no LSM and no RDT; the shared root filesystem (9p,
			// virtio-fs) cannot be idmapped.
			Apparmor:        &features.Apparmor{Enabled: &no},
			Selinux:         &features.Selinux{Enabled: &no},
			IntelRdt:        &features.IntelRdt{Enabled: &no},
			MountExtensions: &features.MountExtensions{IDMap: &features.IDMap{Enabled: &no}},
		},
		Annotations: map[string]string{
			"io.vessel.version":     version.Version,
			"io.vessel.isolation":   "vm",
			"io.vessel.hypervisors": strings.Join(hypervisor.Drivers(), ","),
			"io.vessel.go":          runtime.Version(),
		},
		PotentiallyUnsafeConfigAnnotations: configAnnotations(),
	}
}

// configAnnotations are the annotation names that change the configuration, in key table
// order; annotations of unsupported keys are left out, since they are refused.
func configAnnotations() []string {
	var names []string
	for _, k := range config.Keys() {
		if k.Supported() {
			names = append(names, k.AnnotationNames()...)
		}
	}
	return names
}
