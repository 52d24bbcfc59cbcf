//go:build linux

package agent

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
)

// TestCreateSandboxRefusesHooks checks that a guest hook path is refused, not ignored (the
// agent runs no OCI hooks), and that the refusal leaves no sandbox behind.
func TestCreateSandboxRefusesHooks(t *testing.T) {
	ctx := context.Background()
	a := serve(t, testService(t))
	_, err := a.CreateSandbox(ctx, &agentv1.CreateSandboxRequest{SandboxId: "sb", GuestHookPath: "/hooks"})
	wantCode(t, "guest hook path", err, codes.Unimplemented, "/hooks")
	if _, err := a.CreateSandbox(ctx, &agentv1.CreateSandboxRequest{SandboxId: "sb"}); err != nil {
		t.Fatalf("CreateSandbox after the refused one: %v", err)
	}
}
