//go:build linux

package agent

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
	"github.com/vessel-containers/vessel/internal/testutil"
)

// serveBoth runs svc behind the real ttrpc edge and returns clients of both services.
func serveBoth(t *testing.T, svc *Service) (agentv1.AgentService, agentv1.DebugService) {
	t.Helper()
	srv, err := NewServer(svc, svc.PolicyGate())
	if err != nil {
		t.Fatal(err)
	}
	client := ttrpc.NewClient(testutil.ServeTTRPC(t, srv))
	t.Cleanup(func() { client.Close() })
	return agentv1.NewAgentClient(client), agentv1.NewDebugClient(client)
}

// TestDebugRefusedUnlessEnabled checks the guest-side gate: without a sandbox, and in a
// sandbox created without debug_console, every Debug call is PermissionDenied.
func TestDebugRefusedUnlessEnabled(t *testing.T) {
	ctx := context.Background()
	a, d := serveBoth(t, testService(t))
	start := &agentv1.DebugStartRequest{ExecId: "x", Args: []string{"/bin/true"}}
	_, err := d.DebugStart(ctx, start)
	wantCode(t, "DebugStart without a sandbox", err, codes.PermissionDenied, "no sandbox")
	if _, err := a.CreateSandbox(ctx, &agentv1.CreateSandboxRequest{SandboxId: "sb"}); err != nil {
		t.Fatal(err)
	}
	_, err = d.DebugStart(ctx, start)
	wantCode(t, "DebugStart", err, codes.PermissionDenied, "agent.debug_console_enabled")
	_, err = d.DebugWait(ctx, &agentv1.DebugProcessRequest{ExecId: "x"})
	wantCode(t, "DebugWait", err, codes.PermissionDenied, "agent.debug_console_enabled")
	_, err = d.DebugWriteStdin(ctx, &agentv1.DebugWriteRequest{ExecId: "x", Data: []byte("x")})
	wantCode(t, "DebugWriteStdin", err, codes.PermissionDenied, "agent.debug_console_enabled")
}

func debugSandbox(t *testing.T) agentv1.DebugService {
	t.Helper()
	a, d := serveBoth(t, testService(t))
	if _, err := a.CreateSandbox(context.Background(), &agentv1.CreateSandboxRequest{SandboxId: "sb", DebugConsole: true}); err != nil {
		t.Fatal(err)
	}
	return d
}

// readAll reads a debug stream to EOF.
func readAll(ctx context.Context, t *testing.T, read func(context.Context, *agentv1.DebugReadRequest) (*agentv1.ReadStreamResponse, error), id string) string {
	t.Helper()
	var out strings.Builder
	for {
		r, err := read(ctx, &agentv1.DebugReadRequest{ExecId: id})
		if err != nil {
			t.Fatalf("read %s: %v", id, err)
		}
		if r.GetEof() {
			return out.String()
		}
		out.Write(r.GetData())
	}
}

func TestDebugExecPipes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d := debugSandbox(t)
	if _, err := d.DebugStart(ctx, &agentv1.DebugStartRequest{
		ExecId: "e1", Args: []string{"sh", "-c", "echo out $DBG; echo err >&2; exit 3"}, Env: []string{"DBG=42"},
	}); err != nil {
		t.Fatal(err)
	}
	_, err := d.DebugStart(ctx, &agentv1.DebugStartRequest{ExecId: "e1", Args: []string{"true"}})
	wantCode(t, "second DebugStart e1", err, codes.AlreadyExists, "e1")
	if got := readAll(ctx, t, d.DebugReadStdout, "e1"); got != "out 42\n" {
		t.Errorf("stdout: got %q, want %q", got, "out 42\n")
	}
	if got := readAll(ctx, t, d.DebugReadStderr, "e1"); got != "err\n" {
		t.Errorf("stderr: got %q, want %q", got, "err\n")
	}
	w, err := d.DebugWait(ctx, &agentv1.DebugProcessRequest{ExecId: "e1"})
	if err != nil {
		t.Fatal(err)
	}
	if w.GetStatus() != 3 {
		t.Errorf("status: got %d, want 3", w.GetStatus())
	}
	_, err = d.DebugWait(ctx, &agentv1.DebugProcessRequest{ExecId: "e1"})
	wantCode(t, "DebugWait after everything was read", err, codes.NotFound, "e1")
	_, err = d.DebugStart(ctx, &agentv1.DebugStartRequest{ExecId: "e2", Args: []string{"no-such-program-here"}})
	wantCode(t, "DebugStart of a missing program", err, codes.NotFound, "no-such-program-here")
}

// TestDebugTerminal runs a shell on a guest terminal: the size asked at start and a
// resize show in stty, input is echoed, and the exit status comes back.
func TestDebugTerminal(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d := debugSandbox(t)
	if _, err := d.DebugStart(ctx, &agentv1.DebugStartRequest{
		ExecId: "tty", Args: []string{"sh"}, Stdio: &agentv1.StdioConfig{Terminal: true, Stdin: true, ConsoleHeight: 30, ConsoleWidth: 100},
	}); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	expect := func(want string) {
		t.Helper()
		for !strings.Contains(out.String(), want) {
			r, err := d.DebugReadStdout(ctx, &agentv1.DebugReadRequest{ExecId: "tty"})
			if err != nil {
				t.Fatalf("read terminal waiting for %q: %v (read so far %q)", want, err, out.String())
			}
			if r.GetEof() {
				t.Fatalf("terminal ended before %q (read %q)", want, out.String())
			}
			out.Write(r.GetData())
		}
	}
	write := func(s string) {
		t.Helper()
		if _, err := d.DebugWriteStdin(ctx, &agentv1.DebugWriteRequest{ExecId: "tty", Data: []byte(s)}); err != nil {
			t.Fatal(err)
		}
	}
	write("echo size=$(stty size)\n")
	expect("size=30 100")
	if _, err := d.DebugResize(ctx, &agentv1.DebugResizeRequest{ExecId: "tty", Row: 41, Column: 123}); err != nil {
		t.Fatal(err)
	}
	write("echo size=$(stty size)\n")
	expect("size=41 123")
	write("exit 7\n")
	w, err := d.DebugWait(ctx, &agentv1.DebugProcessRequest{ExecId: "tty"})
	if err != nil {
		t.Fatal(err)
	}
	if w.GetStatus() != 7 {
		t.Errorf("status: got %d, want 7", w.GetStatus())
	}
}

// TestDebugDeniedByPolicy checks that the agent policy covers the Debug service: a denied
// DebugStart is refused even in a sandbox that enabled the debug console.
func TestDebugDeniedByPolicy(t *testing.T) {
	ctx := context.Background()
	a, d := serveBoth(t, testService(t))
	if _, err := a.CreateSandbox(ctx, &agentv1.CreateSandboxRequest{SandboxId: "sb", DebugConsole: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.SetPolicy(ctx, &agentv1.SetPolicyRequest{Policy: []byte(`deny = ["DebugStart"]`)}); err != nil {
		t.Fatal(err)
	}
	_, err := d.DebugStart(ctx, &agentv1.DebugStartRequest{ExecId: "x", Args: []string{"true"}})
	wantCode(t, "DebugStart denied by the policy", err, codes.PermissionDenied, "DebugStart")
}
