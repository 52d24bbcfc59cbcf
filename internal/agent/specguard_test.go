package agent

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
)

// TestCreateContainerRefusesHostileSpec sends what an attacker who can talk to the agent
// (or a buggy host) would: hooks that run as guest root, and namespace paths that join
// another process's namespaces. The host's own specs (hooks dropped, namespace paths
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
			name:   "empty hooks object",
			spec:   `{"process":{"args":["sh"]},"hooks":{}}`,
			code:   codes.InvalidArgument,
			msgHas: "oci_spec.hooks",
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
