//go:build linux

package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
	"github.com/vessel-containers/vessel/internal/testutil"
)

// serve runs svc behind the real ttrpc edge on a unix socket and returns a client.
func serve(t *testing.T, svc agentv1.AgentService) agentv1.AgentService {
	t.Helper()
	srv, err := NewServer(svc, gateOf(svc))
	if err != nil {
		t.Fatal(err)
	}
	client := ttrpc.NewClient(testutil.ServeTTRPC(t, srv))
	t.Cleanup(func() { client.Close() })
	return agentv1.NewAgentClient(client)
}

func testService(t *testing.T) *Service {
	cfg := DefaultConfig()
	cfg.RunDir = t.TempDir()
	cfg.SysDir = t.TempDir()
	cfg.PodNetNS = "" // no network namespace is made on the machine running the tests
	return NewService(cfg)
}

func wantCode(t *testing.T, what string, err error, code codes.Code, msgHas string) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != code {
		t.Errorf("%s: code = %v (%v), want %v", what, st.Code(), err, code)
		return
	}
	if !strings.Contains(st.Message(), msgHas) {
		t.Errorf("%s: message %q does not mention %q", what, st.Message(), msgHas)
	}
}

func TestCheck(t *testing.T) {
	a := serve(t, testService(t))
	resp, err := a.Check(context.Background(), &agentv1.CheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !resp.Serving || resp.ProtocolVersion != agentv1.ProtocolVersion || resp.AgentVersion == "" {
		t.Fatalf("check = %+v", resp)
	}
}

func TestUnknownContainerErrors(t *testing.T) {
	ctx := context.Background()
	a := serve(t, testService(t))
	calls := map[string]func(id string) error{
		"StartContainer": func(id string) error {
			_, err := a.StartContainer(ctx, &agentv1.StartContainerRequest{ContainerId: id})
			return err
		},
		"RemoveContainer": func(id string) error {
			_, err := a.RemoveContainer(ctx, &agentv1.RemoveContainerRequest{ContainerId: id})
			return err
		},
		"WaitProcess": func(id string) error {
			_, err := a.WaitProcess(ctx, &agentv1.WaitProcessRequest{ContainerId: id})
			return err
		},
		"SignalProcess": func(id string) error {
			_, err := a.SignalProcess(ctx, &agentv1.SignalProcessRequest{ContainerId: id, Signal: 15})
			return err
		},
		// Signal 0 checks that the process exists, so an unknown container is NotFound.
		"SignalProcess 0": func(id string) error {
			_, err := a.SignalProcess(ctx, &agentv1.SignalProcessRequest{ContainerId: id, Signal: 0})
			return err
		},
		"ReadStdout": func(id string) error {
			_, err := a.ReadStdout(ctx, &agentv1.ReadStreamRequest{ContainerId: id})
			return err
		},
		"WriteStdin": func(id string) error {
			_, err := a.WriteStdin(ctx, &agentv1.WriteStreamRequest{ContainerId: id})
			return err
		},
		"StatsContainer": func(id string) error {
			_, err := a.StatsContainer(ctx, &agentv1.StatsContainerRequest{ContainerId: id})
			return err
		},
		"PauseContainer": func(id string) error {
			_, err := a.PauseContainer(ctx, &agentv1.PauseContainerRequest{ContainerId: id})
			return err
		},
		"ListProcesses": func(id string) error {
			_, err := a.ListProcesses(ctx, &agentv1.ListProcessesRequest{ContainerId: id})
			return err
		},
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			wantCode(t, "unknown id", call("ghost"), codes.NotFound, `"ghost"`)
			wantCode(t, "empty id", call(""), codes.NotFound, "container_id is empty")
		})
	}
}

func TestMalformedRequests(t *testing.T) {
	ctx := context.Background()
	a := serve(t, testService(t))
	_, err := a.CreateContainer(ctx, &agentv1.CreateContainerRequest{OciSpec: []byte("{}")})
	wantCode(t, "no id", err, codes.InvalidArgument, "container_id")
	_, err = a.CreateContainer(ctx, &agentv1.CreateContainerRequest{ContainerId: "../x", OciSpec: []byte("{}")})
	wantCode(t, "bad id", err, codes.InvalidArgument, "container_id")
	_, err = a.CreateContainer(ctx, &agentv1.CreateContainerRequest{ContainerId: "c1"})
	wantCode(t, "no spec", err, codes.InvalidArgument, "oci_spec")
	_, err = a.CreateContainer(ctx, &agentv1.CreateContainerRequest{ContainerId: "c1", OciSpec: []byte("{nope")})
	wantCode(t, "bad json", err, codes.InvalidArgument, "oci_spec")
	_, err = a.CreateContainer(ctx, &agentv1.CreateContainerRequest{ContainerId: "c1", OciSpec: []byte(`{"ociVersion":"1.0.0"}`)})
	wantCode(t, "no process", err, codes.InvalidArgument, "process")
	_, err = a.CreateContainer(ctx, &agentv1.CreateContainerRequest{ContainerId: "c1", OciSpec: []byte(`{"process":{"args":["sh"]}}`)})
	wantCode(t, "no sandbox", err, codes.FailedPrecondition, "CreateSandbox")
	_, err = a.SetGuestDateTime(ctx, &agentv1.SetGuestDateTimeRequest{Sec: 1, Usec: 2_000_000})
	wantCode(t, "usec", err, codes.InvalidArgument, "usec")
	_, err = a.ExecProcess(ctx, &agentv1.ExecProcessRequest{ContainerId: "c1"})
	wantCode(t, "exec id", err, codes.InvalidArgument, "exec_id")
	_, err = a.UpdateInterface(ctx, &agentv1.UpdateInterfaceRequest{})
	wantCode(t, "interface", err, codes.InvalidArgument, "interface")
	_, err = a.MemHotplugByProbe(ctx, &agentv1.MemHotplugByProbeRequest{})
	wantCode(t, "probe", err, codes.InvalidArgument, "mem_hotplug_probe_addr")
}

func TestSandboxTwice(t *testing.T) {
	ctx := context.Background()
	svc := testService(t)
	a := serve(t, svc)
	if _, err := a.CreateSandbox(ctx, &agentv1.CreateSandboxRequest{SandboxId: "sb", Dns: []string{"10.0.0.1"}, DnsSearch: []string{"a.example"}, DnsOptions: []string{"ndots:2"}}); err != nil {
		t.Fatal(err)
	}
	_, err := a.CreateSandbox(ctx, &agentv1.CreateSandboxRequest{SandboxId: "sb"})
	wantCode(t, "twice", err, codes.AlreadyExists, `"sb"`)
	_, err = a.CreateSandbox(ctx, &agentv1.CreateSandboxRequest{SandboxId: "sb2", Storages: []*agentv1.Storage{{Driver: "9p", Source: "x", MountPoint: "/etc"}}})
	wantCode(t, "still twice", err, codes.AlreadyExists, "sb")
	if _, err := a.DestroySandbox(ctx, &agentv1.DestroySandboxRequest{}); err != nil {
		t.Fatal(err)
	}
	// Refused storage: the sandbox is not created and no storage stays mounted.
	_, err = a.CreateSandbox(ctx, &agentv1.CreateSandboxRequest{SandboxId: "sb3", Storages: []*agentv1.Storage{{Driver: "9p", Source: "x", MountPoint: "/etc"}}})
	wantCode(t, "confined", err, codes.InvalidArgument, "/etc")
	if got := svc.storage.Mounted(); len(got) != 0 {
		t.Fatalf("mounted after failure: %v", got)
	}
	_, err = a.DestroySandbox(ctx, &agentv1.DestroySandboxRequest{})
	wantCode(t, "destroy none", err, codes.NotFound, "CreateSandbox")
}

// panicky panics in Check: the edge must answer Internal and keep serving.
type panicky struct{ *Service }

func (panicky) Check(context.Context, *agentv1.CheckRequest) (*agentv1.CheckResponse, error) {
	panic("boom")
}

func TestPanicBecomesInternal(t *testing.T) {
	a := serve(t, panicky{testService(t)})
	_, err := a.Check(context.Background(), &agentv1.CheckRequest{})
	wantCode(t, "panic", err, codes.Internal, "boom")
	if _, err := a.Version(context.Background(), &agentv1.VersionRequest{}); err != nil {
		t.Fatalf("agent stopped serving after a panic: %v", err)
	}
}

func TestGetOOMEventStopsWithContext(t *testing.T) {
	a := serve(t, testService(t))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := a.GetOOMEvent(ctx, &agentv1.GetOOMEventRequest{})
	if err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("GetOOMEvent = %v after %v", err, time.Since(start))
	}
}

func TestUndecodableRequest(t *testing.T) {
	method := func(ctx context.Context, unmarshal func(any) error) (any, error) {
		var req agentv1.CheckRequest
		if err := unmarshal(&req); err != nil {
			return nil, err
		}
		return &agentv1.CheckResponse{}, nil
	}
	bad := func(any) error { return errors.New("proto: cannot parse invalid wire-format data") }
	_, err := intercept(context.Background(), nil, bad, &ttrpc.UnaryServerInfo{FullMethod: "/vessel.agent.v1.Agent/Check"}, method)
	wantCode(t, "undecodable", err, codes.InvalidArgument, "Check: cannot decode request")
}

func TestFindPort(t *testing.T) {
	sys := t.TempDir()
	for port, name := range map[string]string{"vport0p0": "", "vport0p1": "org.qemu.guest_agent.0", "vport1p1": "vessel.agent"} {
		d := filepath.Join(sys, "class/virtio-ports", port)
		must(t, os.MkdirAll(d, 0o755))
		if name != "" {
			must(t, os.WriteFile(filepath.Join(d, "name"), []byte(name+"\n"), 0o644))
		}
	}
	got, err := FindPort(sys, "vessel.agent")
	if err != nil || got != "/dev/vport1p1" {
		t.Fatalf("FindPort = %q, %v", got, err)
	}
	if _, err := FindPort(sys, "other"); !errdefs.IsNotFound(err) {
		t.Fatalf("missing port: %v", err)
	}
}

// TestWarmUpNeedsEmptyGuest checks that WarmUp refuses a guest with a sandbox and leaves
// that sandbox alone. (The warm-up itself needs root and a guest kernel: the factory's
// cache integration test runs it in real VMs.)
func TestWarmUpNeedsEmptyGuest(t *testing.T) {
	ctx := context.Background()
	svc := testService(t)
	a := serve(t, svc)
	if _, err := a.CreateSandbox(ctx, &agentv1.CreateSandboxRequest{SandboxId: "sb"}); err != nil {
		t.Fatal(err)
	}
	_, err := a.WarmUp(ctx, &agentv1.WarmUpRequest{})
	wantCode(t, "warm-up with a sandbox", err, codes.FailedPrecondition, "without a sandbox")
	if _, err := a.DestroySandbox(ctx, &agentv1.DestroySandboxRequest{}); err != nil {
		t.Fatalf("the sandbox did not survive the refused warm-up: %v", err)
	}
	if _, err := os.Stat(filepath.Join(svc.cfg.RunDir, "warmup")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("refused warm-up left %s: %v", filepath.Join(svc.cfg.RunDir, "warmup"), err)
	}
}

// TestContainerStorageRefused: a container's storage that fails leaves none of the
// container's storages mounted before it.
func TestContainerStorageRefused(t *testing.T) {
	ctx := context.Background()
	svc := testService(t)
	a := serve(t, svc)
	if _, err := a.CreateSandbox(ctx, &agentv1.CreateSandboxRequest{SandboxId: "sb"}); err != nil {
		t.Fatal(err)
	}
	_, err := a.CreateContainer(ctx, &agentv1.CreateContainerRequest{
		ContainerId: "c1", OciSpec: []byte(`{"process":{"args":["sh"]}}`),
		Storages: []*agentv1.Storage{
			{Driver: "local", Options: []string{"mode=0700"}, MountPoint: svc.cfg.RunDir + "/local/first"},
			{Driver: "9p", Source: "x", MountPoint: "/etc"},
		},
	})
	wantCode(t, "second storage refused", err, codes.InvalidArgument, "storage 1")
	if got := svc.storage.Mounted(); len(got) != 0 {
		t.Fatalf("storages held after the refusal: %v", got)
	}
}
