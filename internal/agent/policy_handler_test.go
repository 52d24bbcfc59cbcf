//go:build linux

package agent

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
)

// A policy set over the wire is enforced by the server's edge on the next requests, before
// their handlers run; its digest is reported; a policy that denies SetPolicy cannot be
// replaced.
func TestSetPolicyEnforced(t *testing.T) {
	c := serve(t, testService(t))
	ctx := context.Background()
	doc := []byte("deny = [\"SetPolicy\", \"StartContainer\"]\n[exec]\nallowed_commands = [[\"true\"]]\n")
	resp, err := c.SetPolicy(ctx, &agentv1.SetPolicyRequest{Policy: doc})
	if err != nil {
		t.Fatal(err)
	}
	details, err := c.GetGuestDetails(ctx, &agentv1.GuestDetailsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got := details.GetAgentDetails().GetPolicyDigest(); got == "" || got != resp.GetDigest() {
		t.Fatalf("reported digest %q, SetPolicy answered %q", got, resp.GetDigest())
	}
	// Denied by name: the container does not exist, so a handler that ran would say
	// NotFound instead.
	_, err = c.StartContainer(ctx, &agentv1.StartContainerRequest{ContainerId: "nope"})
	wantCode(t, "StartContainer", err, codes.PermissionDenied, "StartContainer is denied")
	_, err = c.ExecProcess(ctx, &agentv1.ExecProcessRequest{ContainerId: "nope", ExecId: "e", Process: &agentv1.Process{Args: []string{"sh"}}})
	wantCode(t, "ExecProcess sh", err, codes.PermissionDenied, "exec.allowed_commands")
	_, err = c.ExecProcess(ctx, &agentv1.ExecProcessRequest{ContainerId: "nope", ExecId: "e", Process: &agentv1.Process{Args: []string{"true"}}})
	wantCode(t, "ExecProcess true", err, codes.NotFound, "nope")
	_, err = c.SetPolicy(ctx, &agentv1.SetPolicyRequest{Policy: nil})
	wantCode(t, "SetPolicy", err, codes.PermissionDenied, "SetPolicy is denied")
	// A malformed policy is refused and the one in force stays.
	c2 := serve(t, testService(t))
	_, err = c2.SetPolicy(ctx, &agentv1.SetPolicyRequest{Policy: []byte(`deny = ["Nope"]`)})
	wantCode(t, "malformed SetPolicy", err, codes.InvalidArgument, "not an agent request")
	if d, err := c2.GetGuestDetails(ctx, &agentv1.GuestDetailsRequest{}); err != nil || d.GetAgentDetails().GetPolicyDigest() != "" {
		t.Fatalf("after a refused policy: digest %q, %v", d.GetAgentDetails().GetPolicyDigest(), err)
	}
}
