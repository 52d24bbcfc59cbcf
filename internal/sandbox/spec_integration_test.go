package sandbox

import (
	"context"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/vessel-containers/vessel/internal/bundle"
	"github.com/vessel-containers/vessel/internal/oci"
)

// podContainer creates a busybox container of pod "sb" whose spec names the sandbox task's
// namespaces by path, as containerd's CRI does, with 42 standing for the sandbox task's pid.
func (e *env) podContainer(id string, args []string, edit func(*specs.Spec)) (*Container, error) {
	e.t.Helper()
	dir := e.t.TempDir()
	spec, err := bundle.CreateBusybox(dir, args, false)
	if err != nil {
		e.t.Fatal(err)
	}
	spec.Annotations = map[string]string{oci.AnnotationContainerdType: "container", oci.AnnotationContainerdSandboxID: "sb"}
	if edit != nil {
		edit(spec)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	plan, err := oci.ContainerConfig(ctx, id, dir, spec, oci.Options{SandboxNamespaces: oci.SandboxNamespacePaths(42, nil)})
	if err != nil {
		return nil, err
	}
	return e.sb.CreateContainer(ctx, ContainerConfig{Plan: plan, Stdin: true})
}

// sandboxNamespace sets the spec's namespace of type t to the sandbox's path.
func sandboxNamespace(spec *specs.Spec, t specs.LinuxNamespaceType, name string) {
	for i, ns := range spec.Linux.Namespaces {
		if ns.Type == t {
			spec.Linux.Namespaces[i].Path = "/proc/42/ns/" + name
		}
	}
}

// TestPodSharesSandboxNamespaces runs a pod the way containerd's CRI lays it out: a sandbox
// container with its own namespaces, then a container whose ipc, uts and pid namespaces are
// the sandbox's by path. In the guest the container must be in the sandbox container's.
func TestPodSharesSandboxNamespaces(t *testing.T) {
	e := newEnv(t)
	pause := e.container("pause", []string{"sleep", "600"}, func(s *specs.Spec) { s.Hostname = "podhost" })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := pause.Start(ctx); err != nil {
		t.Fatal(err)
	}
	script := `hostname; cat /proc/1/cmdline; echo
for ns in ipc uts pid; do [ "$(readlink /proc/1/ns/$ns)" = "$(readlink /proc/self/ns/$ns)" ] && echo $ns-shared; done`
	c, err := e.podContainer("app", []string{"sh", "-c", script}, func(s *specs.Spec) {
		s.Hostname = ""
		sandboxNamespace(s, specs.IPCNamespace, "ipc")
		sandboxNamespace(s, specs.UTSNamespace, "uts")
		sandboxNamespace(s, specs.PIDNamespace, "pid")
	})
	if err != nil {
		t.Fatal(err)
	}
	code, out, stderr := e.run(c, nil)
	if code != 0 {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	want := "podhost\nsleep\x00600\x00\nipc-shared\nuts-shared\npid-shared\n"
	if out != want {
		t.Errorf("stdout %q, want %q", out, want)
	}

	// A host namespace that is not the sandbox's is refused, naming the path.
	_, err = e.podContainer("stray", []string{"true"}, func(s *specs.Spec) {
		for i, ns := range s.Linux.Namespaces {
			if ns.Type == specs.IPCNamespace {
				s.Linux.Namespaces[i].Path = "/proc/1/ns/ipc"
			}
		}
	})
	if err == nil || !strings.Contains(err.Error(), `"/proc/1/ns/ipc": a host namespace means nothing inside the VM`) {
		t.Errorf("foreign ipc path: err %v", err)
	}
}
