package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
)

// TestCreateContainerRefusesHostileSpec sends what an attacker who can talk to the agent
// (or a buggy host) would: hooks that run as guest root, and namespace paths that join
// another process's namespaces. The host's own specs (hooks but startContainer dropped, namespace paths
// cleared, the sandbox pid namespace asked with sandbox_pidns) get past the check and stop
// at the next one (no sandbox yet).
func TestCreateContainerRefusesHostileSpec(t *testing.T) {
	ctx := context.Background()
	a := serve(t, testService(t))
	tests := []struct {
		name   string
		spec   string
		pidns  bool
		code   codes.Code
		msgHas string
	}{
		{
			name:   "prestart hook",
			spec:   `{"process":{"args":["sh"]},"hooks":{"prestart":[{"path":"/bin/sh","args":["sh","-c","id > /run/owned"]}]}}`,
			code:   codes.InvalidArgument,
			msgHas: "oci_spec.hooks",
		},
		{
			name:   "poststop hook beside a startContainer hook",
			spec:   `{"process":{"args":["sh"]},"hooks":{"startContainer":[{"path":"/bin/true"}],"poststop":[{"path":"/bin/sh","args":["sh","-c","id > /run/owned"]}]}}`,
			code:   codes.InvalidArgument,
			msgHas: "oci_spec.hooks has hooks other than startContainer",
		},
		{
			// Run by the container's init, in the container: allowed.
			name:   "startContainer hook",
			spec:   `{"process":{"args":["sh"]},"hooks":{"startContainer":[{"path":"/bin/true"}]},"linux":{"namespaces":[{"type":"pid"},{"type":"mount"}]}}`,
			code:   codes.FailedPrecondition,
			msgHas: "CreateSandbox",
		},
		{
			name:   "pid namespace of guest pid 1",
			spec:   `{"process":{"args":["sh"]},"linux":{"namespaces":[{"type":"pid","path":"/proc/1/ns/pid"}]}}`,
			code:   codes.InvalidArgument,
			msgHas: `oci_spec.linux.namespaces[0] (pid) has path "/proc/1/ns/pid"`,
		},
		{
			name:   "mount namespace path after valid ones",
			spec:   `{"process":{"args":["sh"]},"linux":{"namespaces":[{"type":"pid"},{"type":"ipc"},{"type":"mount","path":"/proc/1/ns/mnt"}]}}`,
			code:   codes.InvalidArgument,
			msgHas: "oci_spec.linux.namespaces[2] (mount)",
		},
		{
			name:   "host-shaped spec",
			spec:   `{"process":{"args":["sh"]},"linux":{"namespaces":[{"type":"pid"},{"type":"ipc"},{"type":"uts"},{"type":"mount"}]}}`,
			code:   codes.FailedPrecondition,
			msgHas: "CreateSandbox",
		},
		{
			name:   "host-shaped spec joining the sandbox pid namespace",
			spec:   `{"process":{"args":["sh"]},"linux":{"namespaces":[{"type":"pid"},{"type":"mount"}]}}`,
			pidns:  true,
			code:   codes.FailedPrecondition,
			msgHas: "CreateSandbox",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := a.CreateContainer(ctx, &agentv1.CreateContainerRequest{
				ContainerId:  "c1",
				OciSpec:      []byte(tc.spec),
				SandboxPidns: tc.pidns,
			})
			wantCode(t, tc.name, err, tc.code, tc.msgHas)
		})
	}
}

// TestCheckSpecPaths plants what something in the guest that can write the shared tree
// would at the next container's paths: its rootfs and a bind-mount source replaced by
// symlinks to the guest's root, and a symlinked parent directory.
func TestCheckSpecPaths(t *testing.T) {
	run := t.TempDir()
	for _, d := range []string{"shared/c1/rootfs", "shared/c2", "shared/real"} {
		if err := os.MkdirAll(filepath.Join(run, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(run, "shared/c1/mount-0"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{
		"shared/c2/rootfs":  "/",
		"shared/c2/mount-0": "/etc/shadow",
		"shared/c3":         filepath.Join(run, "shared/real"),
	} {
		if err := os.Symlink(target, filepath.Join(run, link)); err != nil {
			t.Fatal(err)
		}
	}
	spec := func(root string, binds ...string) *specs.Spec {
		s := &specs.Spec{Root: &specs.Root{Path: root}}
		for _, b := range binds {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/x", Type: "bind", Source: b, Options: []string{"rbind", "ro"}})
		}
		// Not a bind mount: its source is not a path.
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/proc", Type: "proc", Source: "proc"})
		return s
	}
	tests := []struct {
		name   string
		spec   *specs.Spec
		msgHas string // "" when the spec is fine
	}{
		{"host-shaped", spec(run+"/shared/c1/rootfs", run+"/shared/c1/mount-0", "/dev/null"), ""},
		{"relative root", spec("rootfs"), ""},
		{"rootfs is a symlink", spec(run + "/shared/c2/rootfs"), "oci_spec.root.path"},
		{"bind source is a symlink", spec(run+"/shared/c1/rootfs", run+"/shared/c2/mount-0"), "oci_spec.mounts[0].source"},
		{"parent is a symlink", spec(run + "/shared/c3/rootfs"), "is a symlink"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := checkSpecPaths(run, tc.spec)
			if tc.msgHas == "" {
				if err != nil {
					t.Fatalf("valid spec refused: %v", err)
				}
				return
			}
			if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tc.msgHas) {
				t.Fatalf("err = %v, want invalid argument naming %q", err, tc.msgHas)
			}
		})
	}
}
