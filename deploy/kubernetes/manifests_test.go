// Package kubernetes_test checks the manifests in deploy/kubernetes against the
// Kubernetes API types: strict decoding (an unknown or misspelt field is an error), the
// right apiVersion and kind, and the values Vessel relies on.
package kubernetes_test

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/vessel-containers/vessel/internal/config"
)

func decode(t *testing.T, name string, into any) {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(data, into); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

func TestRuntimeClass(t *testing.T) {
	var rc nodev1.RuntimeClass
	decode(t, "runtimeclass.yaml", &rc)
	if rc.APIVersion != "node.k8s.io/v1" || rc.Kind != "RuntimeClass" {
		t.Errorf("apiVersion/kind = %s/%s, want node.k8s.io/v1/RuntimeClass", rc.APIVersion, rc.Kind)
	}
	if rc.Handler != "vessel" {
		t.Errorf("handler = %q, want vessel (the containerd runtime name)", rc.Handler)
	}
	for _, msg := range validation.IsDNS1123Label(rc.Handler) {
		t.Errorf("handler %q: %s", rc.Handler, msg)
	}
	if rc.Overhead == nil {
		t.Fatal("no overhead")
	}
	// The fixed part of the VM's memory is part of the overhead: podFixed must not be
	// below the default VM memory.
	cfg, err := config.Parse(nil, "defaults")
	if err != nil {
		t.Fatal(err)
	}
	vm := resource.MustParse(strconv.FormatUint(uint64(cfg.Hypervisor.DefaultMemory), 10) + "Mi")
	mem, ok := rc.Overhead.PodFixed[corev1.ResourceMemory]
	if !ok || mem.Cmp(vm) <= 0 {
		t.Errorf("overhead.podFixed.memory = %s, want more than default_memory (%s)", mem.String(), vm.String())
	}
	if cpu, ok := rc.Overhead.PodFixed[corev1.ResourceCPU]; !ok || cpu.Sign() <= 0 {
		t.Errorf("overhead.podFixed.cpu = %s, want a positive amount", cpu.String())
	}
	if rc.Scheduling == nil || len(rc.Scheduling.NodeSelector) == 0 {
		t.Error("scheduling.nodeSelector is empty: pods could land on nodes without Vessel")
	}
}

func TestExamplePod(t *testing.T) {
	var pod corev1.Pod
	decode(t, "pod-example.yaml", &pod)
	if pod.APIVersion != "v1" || pod.Kind != "Pod" {
		t.Errorf("apiVersion/kind = %s/%s, want v1/Pod", pod.APIVersion, pod.Kind)
	}
	if pod.Spec.RuntimeClassName == nil || *pod.Spec.RuntimeClassName != "vessel" {
		t.Errorf("runtimeClassName = %v, want vessel", pod.Spec.RuntimeClassName)
	}
	if pod.Spec.HostNetwork || pod.Spec.HostPID || pod.Spec.HostIPC {
		t.Error("the example pod asks for a host namespace, which Vessel refuses")
	}
}

func TestEveryManifestChecked(t *testing.T) {
	names, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	checked := map[string]bool{"runtimeclass.yaml": true, "pod-example.yaml": true}
	for _, n := range names {
		if !checked[n] {
			t.Errorf("%s has no test here", n)
		}
	}
}
