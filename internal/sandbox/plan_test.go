package sandbox

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
	"github.com/vessel-containers/vessel/internal/bundle"
	"github.com/vessel-containers/vessel/internal/config"
	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/oci"
	"github.com/vessel-containers/vessel/internal/testutil"
)

// planAgent answers what Create and CreateContainer ask of a guest and records the sandbox
// and container requests.
type planAgent struct {
	agentv1.AgentService // nil: requests the test does not expect panic the server

	// hangCreate makes CreateContainer answer only when its caller gives up (a guest
	// that never finishes creating the container).
	hangCreate bool

	// mu guards sandbox and container.
	mu        sync.Mutex
	sandbox   *agentv1.CreateSandboxRequest
	container *agentv1.CreateContainerRequest
}

func (a *planAgent) Check(context.Context, *agentv1.CheckRequest) (*agentv1.CheckResponse, error) {
	return &agentv1.CheckResponse{ProtocolVersion: agentv1.ProtocolVersion}, nil
}

func (a *planAgent) SetGuestDateTime(context.Context, *agentv1.SetGuestDateTimeRequest) (*agentv1.Empty, error) {
	return &agentv1.Empty{}, nil
}

func (a *planAgent) ReseedRandomDev(context.Context, *agentv1.ReseedRandomDevRequest) (*agentv1.Empty, error) {
	return &agentv1.Empty{}, nil
}

func (a *planAgent) CreateSandbox(_ context.Context, r *agentv1.CreateSandboxRequest) (*agentv1.Empty, error) {
	a.mu.Lock()
	a.sandbox = r
	a.mu.Unlock()
	return &agentv1.Empty{}, nil
}

func (a *planAgent) CreateContainer(ctx context.Context, r *agentv1.CreateContainerRequest) (*agentv1.Empty, error) {
	a.mu.Lock()
	a.container = r
	a.mu.Unlock()
	if a.hangCreate {
		<-ctx.Done() // the client's deadline travels with the request
		return nil, ctx.Err()
	}
	return &agentv1.Empty{}, nil
}

func (a *planAgent) RemoveContainer(context.Context, *agentv1.RemoveContainerRequest) (*agentv1.Empty, error) {
	return &agentv1.Empty{}, nil
}

// agentVM is a VM whose guest is a planAgent served on the agent socket in its state
// directory from Start to Stop.
type agentVM struct {
	cfg   hypervisor.Config
	agent *planAgent
	srv   *ttrpc.Server
	done  chan struct{}
}

func (v *agentVM) Start(ctx context.Context) error {
	srv, err := ttrpc.NewServer()
	if err != nil {
		return err
	}
	agentv1.RegisterAgentService(srv, v.agent)
	l, err := net.Listen("unix", filepath.Join(v.cfg.StateDir, "agent.sock"))
	if err != nil {
		return err
	}
	v.srv = srv
	go func() { // owner: the VM; ends when Stop closes the server
		defer close(v.done)
		_ = srv.Serve(context.Background(), l)
	}()
	return nil
}

func (v *agentVM) Stop(context.Context) error {
	if v.srv != nil {
		v.srv.Close()
		<-v.done
		v.srv = nil
	}
	return nil
}
func (v *agentVM) Pause(context.Context) error  { return nil }
func (v *agentVM) Resume(context.Context) error { return nil }
func (v *agentVM) State(context.Context) (hypervisor.State, error) {
	return hypervisor.StateRunning, nil
}
func (v *agentVM) Agent() hypervisor.AgentAddress {
	return hypervisor.AgentAddress{Kind: "serial", Path: filepath.Join(v.cfg.StateDir, "agent.sock")}
}
func (v *agentVM) Pid() int              { return os.Getpid() }
func (v *agentVM) Done() <-chan struct{} { return v.done }
func (v *agentVM) Err() error            { return nil }

// planAgents hands each "plantest" VM the agent the test reads.
var planAgents = make(chan *planAgent, 1)

func init() {
	hypervisor.Register("plantest", hypervisor.Driver{
		New: func(cfg hypervisor.Config) (hypervisor.VM, error) {
			return &agentVM{cfg: cfg, agent: <-planAgents, done: make(chan struct{})}, nil
		},
		Capabilities: hypervisor.Capabilities{SharedFS: []hypervisor.SharedFS{hypervisor.SharedFS9P}},
	})
}

// planSandbox creates a sandbox from a plan made of cfg, over a planAgent.
func planSandbox(t *testing.T, cfg *config.Config) (*Sandbox, *planAgent, *oci.Sandbox) {
	t.Helper()
	return planSandboxWith(t, cfg, &planAgent{})
}

// planSandboxWith is planSandbox over the given agent.
func planSandboxWith(t *testing.T, cfg *config.Config, agent *planAgent) (*Sandbox, *planAgent, *oci.Sandbox) {
	t.Helper()
	dir := t.TempDir()
	spec := bundle.DefaultSpec([]string{"true"}, false)
	spec.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: specs.ActErrno}
	plan, err := oci.SandboxConfig(context.Background(), "sb", dir, spec, cfg, oci.Options{Host: config.Host{CPUs: 2, MemoryMiB: 2048}})
	if err != nil {
		t.Fatal(err)
	}
	root, err := os.MkdirTemp("", "vsp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	planAgents <- agent
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sb, err := Create(ctx, Config{
		ID: plan.ID, Root: root, Hypervisor: "plantest", VM: plan.VM,
		Timeouts: plan.Agent.Timeouts, KernelModules: plan.Agent.KernelModules,
		Effective: plan.Config,
	})
	if err != nil {
		select { // a Create that failed before making its VM leaves the agent unclaimed
		case <-planAgents:
		default:
		}
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := sb.Delete(context.Background()); err != nil {
			t.Errorf("delete sandbox: %v", err)
		}
	})
	return sb, agent, plan
}

// TestCreateSendsAgentPlan checks that the agent's part of the plan reaches the guest.
func TestCreateSendsAgentPlan(t *testing.T) {
	cfg := config.Default()
	cfg.Agent.KernelModules = []string{"nf_tables", "br_netfilter debug=1"}
	cfg.Agent.DialTimeout = 5
	_, agent, _ := planSandbox(t, cfg)

	agent.mu.Lock()
	got := agent.sandbox
	agent.mu.Unlock()
	if got == nil {
		t.Fatal("the agent got no CreateSandbox")
	}
	var mods []string
	for _, m := range got.GetKernelModules() {
		mods = append(mods, m.GetName()+"|"+strings.Join(m.GetParameters(), " "))
	}
	if want := []string{"nf_tables|", "br_netfilter|debug=1"}; !reflect.DeepEqual(mods, want) {
		t.Errorf("kernel modules sent = %q, want %q", mods, want)
	}
}

// TestCreateContainerSendsGuestSpec checks that CreateContainer sends oci.GuestSpec's
// conversion of the plan under the sandbox's effective configuration.
func TestCreateContainerSendsGuestSpec(t *testing.T) {
	testutil.RequiresRoot(t) // the share bind-mounts the rootfs
	for _, disable := range []bool{true, false} {
		cfg := config.Default()
		cfg.Runtime.DisableGuestSeccomp = disable
		sb, agent, _ := planSandbox(t, cfg)
		dir := t.TempDir()
		if err := os.Mkdir(filepath.Join(dir, "rootfs"), 0o755); err != nil {
			t.Fatal(err)
		}
		spec := bundle.DefaultSpec([]string{"true"}, false)
		spec.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: specs.ActErrno}
		spec.Hooks = &specs.Hooks{Poststop: []specs.Hook{{Path: "/bin/true"}}}
		plan, err := oci.ContainerConfig(context.Background(), "c1", dir, spec, oci.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sb.CreateContainer(context.Background(), ContainerConfig{Plan: plan}); err != nil {
			t.Fatal(err)
		}
		if err := sb.DeleteContainer(context.Background(), "c1"); err != nil {
			t.Fatal(err)
		}
		agent.mu.Lock()
		req := agent.container
		agent.mu.Unlock()
		var g specs.Spec
		if err := json.Unmarshal(req.GetOciSpec(), &g); err != nil {
			t.Fatal(err)
		}
		if got := g.Linux.Seccomp != nil; got == disable {
			t.Errorf("disable_guest_seccomp = %v: guest spec has seccomp = %v", disable, got)
		}
		if g.Hooks != nil || g.Root.Path == filepath.Join(dir, "rootfs") {
			t.Errorf("guest spec keeps host parts: hooks %v, root %q", g.Hooks, g.Root.Path)
		}
	}
}

// TestCreateContainerTimeout checks that agent.create_container_timeout bounds a guest that
// never finishes creating a container, and that the failed create leaves no share behind.
func TestCreateContainerTimeout(t *testing.T) {
	testutil.RequiresRoot(t) // the share bind-mounts the rootfs
	for _, timeout := range []uint32{1, 3} {
		cfg := config.Default()
		cfg.Agent.CreateContainerTimeout = timeout
		cfg.Agent.RequestTimeout = 60
		sb, _, _ := planSandboxWith(t, cfg, &planAgent{hangCreate: true})
		dir := t.TempDir()
		if err := os.Mkdir(filepath.Join(dir, "rootfs"), 0o755); err != nil {
			t.Fatal(err)
		}
		plan, err := oci.ContainerConfig(context.Background(), "c1", dir, bundle.DefaultSpec([]string{"true"}, false), oci.Options{})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		begin := time.Now()
		_, err = sb.CreateContainer(ctx, ContainerConfig{Plan: plan})
		elapsed := time.Since(begin)
		cancel()
		want := time.Duration(timeout) * time.Second
		if err == nil || elapsed < want || elapsed > want+10*time.Second {
			t.Fatalf("create_container_timeout = %d: CreateContainer returned %v after %v, want an error after %v", timeout, err, elapsed, want)
		}
		for _, p := range []string{filepath.Join(sb.Dir(), "mounts", "c1"), filepath.Join(sb.share.Dir(), "containers", "c1")} {
			if _, err := os.Lstat(p); !os.IsNotExist(err) {
				t.Errorf("after the failed create %s exists (%v), want it removed", p, err)
			}
		}
	}
}
