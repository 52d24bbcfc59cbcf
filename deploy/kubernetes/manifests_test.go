// Package kubernetes_test checks the manifests in deploy/kubernetes against the
// Kubernetes API types: strict decoding (an unknown or misspelt field is an error), the
// right apiVersion and kind, and the values Vessel relies on.
package kubernetes_test

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/vessel-containers/vessel/internal/config"
	"github.com/vessel-containers/vessel/internal/nodeinstall"
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
		t.Fatal("scheduling.nodeSelector is empty: pods could land on nodes without Vessel")
	}
	want := map[string]string{nodeinstall.NodeLabelKey: nodeinstall.NodeLabelValue}
	if got := rc.Scheduling.NodeSelector; len(got) != 1 || got[nodeinstall.NodeLabelKey] != nodeinstall.NodeLabelValue {
		t.Errorf("scheduling.nodeSelector = %v, want %v, the label vessel install --node-name sets", got, want)
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
	checked := map[string]bool{"runtimeclass.yaml": true, "pod-example.yaml": true, "vessel-deploy.yaml": true, "vessel-cleanup.yaml": true}
	for _, n := range names {
		if !checked[n] {
			t.Errorf("%s has no test here", n)
		}
	}
}

// documents splits a multi-document manifest and decodes each document strictly into the
// API type its kind names.
func documents(t *testing.T, name string) []any {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	var out []any
	for i, doc := range bytes.Split(data, []byte("\n---\n")) {
		var meta struct{ APIVersion, Kind string }
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatalf("%s document %d: %v", name, i, err)
		}
		var obj any
		switch meta.APIVersion + " " + meta.Kind {
		case "v1 ServiceAccount":
			obj = &corev1.ServiceAccount{}
		case "rbac.authorization.k8s.io/v1 ClusterRole":
			obj = &rbacv1.ClusterRole{}
		case "rbac.authorization.k8s.io/v1 ClusterRoleBinding":
			obj = &rbacv1.ClusterRoleBinding{}
		case "apps/v1 DaemonSet":
			obj = &appsv1.DaemonSet{}
		default:
			t.Fatalf("%s document %d: apiVersion %q kind %q: want a ServiceAccount, ClusterRole(Binding) or DaemonSet", name, i, meta.APIVersion, meta.Kind)
		}
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			t.Fatalf("%s document %d (%s): %v", name, i, meta.Kind, err)
		}
		out = append(out, obj)
	}
	return out
}

func only[T any](t *testing.T, docs []any) T {
	t.Helper()
	var found []T
	for _, d := range docs {
		if v, ok := d.(T); ok {
			found = append(found, v)
		}
	}
	if len(found) != 1 {
		var zero T
		t.Fatalf("%d documents of type %T, want 1", len(found), zero)
	}
	return found[0]
}

// checkDaemonSet checks what vessel install and uninstall rely on in a node DaemonSet:
// the service account, privileges, the host's / at /host, the host's systemd, the node
// name from the downward API, and the command, which must name them.
func checkDaemonSet(t *testing.T, ds *appsv1.DaemonSet, verb string) {
	t.Helper()
	if ds.Namespace != "kube-system" {
		t.Errorf("namespace = %q, want kube-system", ds.Namespace)
	}
	if ds.Spec.Selector == nil || !labelsMatch(ds.Spec.Selector.MatchLabels, ds.Spec.Template.Labels) {
		t.Errorf("selector %v does not select the pod template's labels %v", ds.Spec.Selector, ds.Spec.Template.Labels)
	}
	spec := ds.Spec.Template.Spec
	if spec.ServiceAccountName != "vessel-deploy" {
		t.Errorf("serviceAccountName = %q, want vessel-deploy", spec.ServiceAccountName)
	}
	if spec.HostPID {
		t.Error("hostPID is true")
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(spec.Containers))
	}
	c := spec.Containers[0]
	if c.SecurityContext == nil || c.SecurityContext.Privileged == nil || !*c.SecurityContext.Privileged {
		t.Error("the container is not privileged")
	}
	hostPaths := map[string]string{}
	for _, v := range spec.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
		}
	}
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = hostPaths[m.Name]
	}
	if mounts["/host"] != "/" {
		t.Errorf("/host is the host's %q, want /", mounts["/host"])
	}
	if mounts["/run/systemd"] != "/run/systemd" {
		t.Errorf("/run/systemd is the host's %q, want /run/systemd (systemctl restart containerd)", mounts["/run/systemd"])
	}
	var nodeEnv bool
	for _, e := range c.Env {
		if e.Name == "NODE_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName" {
			nodeEnv = true
		}
	}
	if !nodeEnv {
		t.Error("no NODE_NAME from the downward API's spec.nodeName")
	}
	cmd := strings.Join(append(slices.Clone(c.Command), c.Args...), " ")
	for _, want := range []string{"/opt/vessel/vessel " + verb + " ", "--root /host", `--node-name "$(NODE_NAME)"`, "--restart"} {
		if !strings.Contains(cmd, want) {
			t.Errorf("the command %q does not contain %q", cmd, want)
		}
	}
}

func labelsMatch(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func TestVesselDeploy(t *testing.T) {
	docs := documents(t, "vessel-deploy.yaml")
	sa := only[*corev1.ServiceAccount](t, docs)
	role := only[*rbacv1.ClusterRole](t, docs)
	binding := only[*rbacv1.ClusterRoleBinding](t, docs)
	ds := only[*appsv1.DaemonSet](t, docs)

	if sa.Name != "vessel-deploy" || sa.Namespace != "kube-system" {
		t.Errorf("service account %s/%s, want kube-system/vessel-deploy", sa.Namespace, sa.Name)
	}
	verbs := map[string]bool{}
	for _, r := range role.Rules {
		if slices.Contains(r.APIGroups, "") && slices.Contains(r.Resources, "nodes") {
			for _, v := range r.Verbs {
				verbs[v] = true
			}
		}
	}
	if !verbs["get"] || !verbs["patch"] || len(verbs) != 2 {
		t.Errorf("the role's verbs on nodes are %v, want get and patch (kubectl label node), no more", verbs)
	}
	if binding.RoleRef.Kind != "ClusterRole" || binding.RoleRef.Name != role.Name {
		t.Errorf("the binding's roleRef %+v does not name ClusterRole %s", binding.RoleRef, role.Name)
	}
	if len(binding.Subjects) != 1 || binding.Subjects[0].Kind != "ServiceAccount" || binding.Subjects[0].Name != sa.Name || binding.Subjects[0].Namespace != sa.Namespace {
		t.Errorf("the binding's subjects %+v, want the service account %s/%s", binding.Subjects, sa.Namespace, sa.Name)
	}
	checkDaemonSet(t, ds, "install")
	cmd := strings.Join(ds.Spec.Template.Spec.Containers[0].Args, " ")
	if !strings.Contains(cmd, "--from /opt/vessel") {
		t.Errorf("the command %q does not install from /opt/vessel", cmd)
	}
}

func TestVesselCleanup(t *testing.T) {
	docs := documents(t, "vessel-cleanup.yaml")
	ds := only[*appsv1.DaemonSet](t, docs)
	checkDaemonSet(t, ds, "uninstall")
	deploy := only[*appsv1.DaemonSet](t, documents(t, "vessel-deploy.yaml"))
	if got, want := ds.Spec.Template.Spec.Containers[0].Image, deploy.Spec.Template.Spec.Containers[0].Image; got != want {
		t.Errorf("the cleanup runs image %s, the deploy %s: want the same", got, want)
	}
}

// The image holds what vessel install --from takes.
func TestDockerfileHoldsTheRelease(t *testing.T) {
	data, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var copied []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "COPY" {
			continue
		}
		if f[len(f)-1] != "/opt/vessel/" {
			t.Errorf("%q copies to %s, want /opt/vessel/", line, f[len(f)-1])
		}
		for _, src := range f[1 : len(f)-1] {
			copied = append(copied, filepath.Base(src))
		}
	}
	for _, want := range slices.Concat(nodeinstall.Binaries, nodeinstall.GuestFiles) {
		if !slices.Contains(copied, want) {
			t.Errorf("the Dockerfile does not copy %s into /opt/vessel", want)
		}
	}
}
