package oci

import (
	"fmt"
	"strconv"

	"github.com/vessel-containers/vessel/internal/containerid"
)

// Kind is what a container is to the sandbox it belongs to.
type Kind string

const (
	// KindSingle is a container started without a pod (ctr, nerdctl, podman, the vessel CLI):
	// it gets a VM of its own and the sandbox id is the container id.
	KindSingle Kind = "single_container"
	// KindPodSandbox is a pod's sandbox (pause) container: it creates the VM.
	KindPodSandbox Kind = "pod_sandbox"
	// KindPodContainer is a container joining an existing pod sandbox.
	KindPodContainer Kind = "pod_container"
)

// CreatesSandbox reports whether creating a container of this kind boots a VM.
func (k Kind) CreatesSandbox() bool { return k == KindSingle || k == KindPodSandbox }

// Annotations the CRI implementations put on specs; Vessel reads them to place a container.
const (
	// containerd
	AnnotationContainerdType      = "io.kubernetes.cri.container-type"
	AnnotationContainerdSandboxID = "io.kubernetes.cri.sandbox-id"
	AnnotationSandboxCPUQuota     = "io.kubernetes.cri.sandbox-cpu-quota"
	AnnotationSandboxCPUPeriod    = "io.kubernetes.cri.sandbox-cpu-period"
	AnnotationSandboxMemory       = "io.kubernetes.cri.sandbox-memory"
	// CRI-O
	AnnotationCRIOType      = "io.kubernetes.cri-o.ContainerType"
	AnnotationCRIOSandboxID = "io.kubernetes.cri-o.SandboxID"
	// Kata's explicit container type (pod_sandbox or pod_container).
	AnnotationKataType = "io.katacontainers.pkg.oci.container_type"
)

// CRI container type values (containerd and CRI-O use the same words).
const (
	criTypeSandbox   = "sandbox"
	criTypeContainer = "container"
)

// AnnotationDoc describes an annotation Vessel reads, for the reference documentation.
type AnnotationDoc struct {
	Name string
	Type string
	Doc  string
}

// RecognizedAnnotations lists the non-configuration annotations Vessel reads.
func RecognizedAnnotations() []AnnotationDoc {
	return []AnnotationDoc{
		{AnnotationContainerdType, "string", `containerd: "sandbox" for a pod's sandbox container, "container" for a container joining it.`},
		{AnnotationContainerdSandboxID, "string", "containerd: id of the pod sandbox; required for a \"container\"."},
		{AnnotationCRIOType, "string", `CRI-O: "sandbox" or "container", as for containerd.`},
		{AnnotationCRIOSandboxID, "string", "CRI-O: id of the pod sandbox; required for a \"container\"."},
		{AnnotationKataType, "string", `Kata: "pod_sandbox" or "pod_container"; must agree with a CRI type annotation when both are present.`},
		{AnnotationSandboxCPUQuota, "int64 (µs)", "containerd: the pod's summed CPU quota; with runtime.static_sandbox_resource_mgmt it sizes the VM at boot."},
		{AnnotationSandboxCPUPeriod, "uint64 (µs)", "containerd: the CFS period of the pod's CPU quota (0 or absent: 100000)."},
		{AnnotationSandboxMemory, "int64 (bytes)", "containerd: the pod's summed memory limit; with runtime.static_sandbox_resource_mgmt it sizes the VM at boot."},
	}
}

// Identify tells what the container with this id and these annotations is, and the id of its
// sandbox. Without CRI annotations the container is a single container and its own sandbox.
// A sandbox container's sandbox id is its own id.
func Identify(id string, annotations map[string]string) (Kind, string, error) {
	kind, err := kindOf(annotations)
	if err != nil {
		return "", "", err
	}
	if kind != KindPodContainer {
		return kind, id, nil
	}
	sid, err := sandboxID(annotations)
	if err != nil {
		return "", "", err
	}
	if sid == "" {
		return "", "", fmt.Errorf("pod container %s has no sandbox id (want annotation %s or %s)",
			id, AnnotationContainerdSandboxID, AnnotationCRIOSandboxID)
	}
	if sid == id {
		return "", "", fmt.Errorf("pod container %s names itself as its sandbox", id)
	}
	return kind, sid, nil
}

func kindOf(annotations map[string]string) (Kind, error) {
	var kinds []Kind
	var from []string
	for _, name := range []string{AnnotationContainerdType, AnnotationCRIOType, AnnotationKataType} {
		v, ok := annotations[name]
		if !ok {
			continue
		}
		var k Kind
		switch {
		case name != AnnotationKataType && v == criTypeSandbox, name == AnnotationKataType && v == string(KindPodSandbox):
			k = KindPodSandbox
		case name != AnnotationKataType && v == criTypeContainer, name == AnnotationKataType && v == string(KindPodContainer):
			k = KindPodContainer
		default:
			allowed := `"sandbox" or "container"`
			if name == AnnotationKataType {
				allowed = `"pod_sandbox" or "pod_container"`
			}
			return "", fmt.Errorf("annotation %s = %s: unknown container type (allowed: %s)", name, strconv.Quote(v), allowed)
		}
		if len(kinds) > 0 && kinds[0] != k {
			return "", fmt.Errorf("annotation %s = %q contradicts %s = %q", name, v, from[0], annotations[from[0]])
		}
		kinds = append(kinds, k)
		from = append(from, name)
	}
	if len(kinds) == 0 {
		return KindSingle, nil
	}
	return kinds[0], nil
}

func sandboxID(annotations map[string]string) (string, error) {
	a, b := annotations[AnnotationContainerdSandboxID], annotations[AnnotationCRIOSandboxID]
	if a != "" && b != "" && a != b {
		return "", fmt.Errorf("annotation %s = %q contradicts %s = %q",
			AnnotationCRIOSandboxID, b, AnnotationContainerdSandboxID, a)
	}
	if a == "" {
		a = b
	}
	if a != "" {
		if err := containerid.Validate(a); err != nil {
			return "", fmt.Errorf("sandbox id annotation: %w", err)
		}
	}
	return a, nil
}

// SandboxResources reads the pod totals containerd puts on a sandbox container's spec.
// Absent annotations count as no limit; malformed ones are errors naming the annotation.
func SandboxResources(annotations map[string]string) (Resources, error) {
	var r Resources
	if v, ok := annotations[AnnotationSandboxCPUQuota]; ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return r, fmt.Errorf("annotation %s = %q: want a decimal int64 (µs, negative means unlimited)", AnnotationSandboxCPUQuota, v)
		}
		r.CPUQuota = n
	}
	if v, ok := annotations[AnnotationSandboxCPUPeriod]; ok {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return r, fmt.Errorf("annotation %s = %q: want a decimal uint64 (µs)", AnnotationSandboxCPUPeriod, v)
		}
		r.CPUPeriod = n
	}
	if v, ok := annotations[AnnotationSandboxMemory]; ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return r, fmt.Errorf("annotation %s = %q: want a decimal int64 (bytes, 0 or negative means unlimited)", AnnotationSandboxMemory, v)
		}
		r.MemoryLimitBytes = n
	}
	return r, nil
}
