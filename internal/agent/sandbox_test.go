//go:build linux

package agent

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
)

// TestCreateSandboxHookPath checks that a guest hook path that is not a clean absolute
// path is refused, and that the refusal leaves no sandbox behind.
func TestCreateSandboxHookPath(t *testing.T) {
	ctx := context.Background()
	a := serve(t, testService(t))
	for _, bad := range []string{"hooks", "/a/../hooks", "/hooks/"} {
		_, err := a.CreateSandbox(ctx, &agentv1.CreateSandboxRequest{SandboxId: "sb", GuestHookPath: bad})
		wantCode(t, "guest hook path "+bad, err, codes.InvalidArgument, bad)
	}
	if _, err := a.CreateSandbox(ctx, &agentv1.CreateSandboxRequest{SandboxId: "sb", GuestHookPath: "/hooks"}); err != nil {
		t.Fatalf("CreateSandbox after the refused ones: %v", err)
	}
}
