//go:build linux

package agent

import (
	"reflect"
	"strings"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"
)

// TestSandboxNamespaces checks which namespaces a container joins from the sandbox's first
// container: the types asked, each one the spec has, and only while that container's init
// runs.
func TestSandboxNamespaces(t *testing.T) {
	s := testService(t)
	spec := func(types ...specs.LinuxNamespaceType) *specs.Spec {
		sp := &specs.Spec{Linux: &specs.Linux{}}
		for _, ty := range types {
			sp.Linux.Namespaces = append(sp.Linux.Namespaces, specs.LinuxNamespace{Type: ty})
		}
		return sp
	}
	all := spec(specs.PIDNamespace, specs.IPCNamespace, specs.UTSNamespace, specs.MountNamespace)

	// No container yet: the first with its own pid namespace becomes the holder; a join fails.
	if paths, holder, err := s.sandboxNamespaces(all, nil, false); err != nil || !holder || paths != nil {
		t.Fatalf("first container: paths %v holder %v err %v, want none, true, nil", paths, holder, err)
	}
	if _, _, err := s.sandboxNamespaces(all, []string{"ipc"}, false); err == nil || !strings.Contains(err.Error(), "has no container yet") {
		t.Fatalf("join before any container: err %v", err)
	}

	init := &process{pid: 4242, exited: make(chan struct{})}
	s.pidnsHolder = "pause"
	s.containers["pause"] = &container{id: "pause", init: init}

	paths, holder, err := s.sandboxNamespaces(all, []string{"ipc", "uts"}, true)
	if err != nil || holder {
		t.Fatalf("pod container: holder %v err %v", holder, err)
	}
	want := map[specs.LinuxNamespaceType]string{
		specs.IPCNamespace: "/proc/4242/ns/ipc", specs.UTSNamespace: "/proc/4242/ns/uts", specs.PIDNamespace: "/proc/4242/ns/pid",
	}
	if !reflect.DeepEqual(paths, want) {
		t.Errorf("paths = %v, want %v", paths, want)
	}
	if paths, _, err := s.sandboxNamespaces(all, nil, false); err != nil || paths != nil {
		t.Errorf("container with its own namespaces: paths %v err %v", paths, err)
	}
	for _, tc := range []struct {
		name   string
		spec   *specs.Spec
		join   []string
		errHas string
	}{
		{"unknown type", all, []string{"mount"}, `"mount" is not a namespace a container can join`},
		{"spec lacks the type", spec(specs.PIDNamespace), []string{"uts"}, "has no uts namespace"},
	} {
		if _, _, err := s.sandboxNamespaces(tc.spec, tc.join, false); err == nil || !strings.Contains(err.Error(), tc.errHas) {
			t.Errorf("%s: err %v, want one containing %q", tc.name, err, tc.errHas)
		}
	}
	close(init.exited)
	if _, _, err := s.sandboxNamespaces(all, []string{"ipc"}, false); err == nil || !strings.Contains(err.Error(), "exited") {
		t.Errorf("holder exited: err %v", err)
	}
}
