package sandbox

import (
	"context"
	"errors"
	"net"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/containerd/ttrpc"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
	"github.com/vessel-containers/vessel/internal/agentclient"
	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/procid"
	"github.com/vessel-containers/vessel/internal/sharefs"
	"github.com/vessel-containers/vessel/internal/testutil"
)

// recAgent is a guest agent that records the requests it gets. It answers RemoveContainer
// and DestroySandbox; any other request fails.
type recAgent struct {
	agentv1.AgentService // nil: the interceptor stops other requests before they get here

	// mu guards calls.
	mu    sync.Mutex
	calls []string
}

func (a *recAgent) RemoveContainer(context.Context, *agentv1.RemoveContainerRequest) (*agentv1.Empty, error) {
	return &agentv1.Empty{}, nil
}

func (a *recAgent) DestroySandbox(context.Context, *agentv1.DestroySandboxRequest) (*agentv1.Empty, error) {
	return &agentv1.Empty{}, nil
}

func (a *recAgent) intercept(ctx context.Context, unmarshal ttrpc.Unmarshaler, info *ttrpc.UnaryServerInfo, method ttrpc.Method) (any, error) {
	name := path.Base(info.FullMethod)
	a.mu.Lock()
	a.calls = append(a.calls, name)
	a.mu.Unlock()
	if name != "RemoveContainer" && name != "DestroySandbox" {
		return nil, errdefs.ErrNotImplemented
	}
	return method(ctx, unmarshal)
}

func (a *recAgent) requests() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.calls)
}

// startAgent serves a recAgent on a unix socket in dir and returns it with a client. The
// server stops at the end of the test.
func startAgent(t *testing.T, dir string) (*recAgent, *agentclient.Client) {
	t.Helper()
	a := &recAgent{}
	srv, err := ttrpc.NewServer(ttrpc.WithUnaryServerInterceptor(a.intercept))
	if err != nil {
		t.Fatal(err)
	}
	agentv1.RegisterAgentService(srv, a)
	l, err := net.Listen("unix", filepath.Join(dir, "agent.sock"))
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(context.Background(), l)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-served
	})
	conn, err := net.Dial("unix", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return a, agentclient.New(conn, agentclient.Timeouts{})
}

// recVM is a VM that only records Stop, and fails it with stopErr.
type recVM struct {
	stopErr error
	// atStop records what the test asks of the host when Stop runs.
	atStop func()

	stopped bool
	done    chan struct{}
}

func (v *recVM) Start(context.Context) error { return nil }
func (v *recVM) Stop(context.Context) error {
	if v.atStop != nil {
		v.atStop()
	}
	if !v.stopped {
		v.stopped = true
		close(v.done)
	}
	return v.stopErr
}
func (v *recVM) Pause(context.Context) error  { return nil }
func (v *recVM) Resume(context.Context) error { return nil }
func (v *recVM) State(context.Context) (hypervisor.State, error) {
	return hypervisor.StateRunning, nil
}
func (v *recVM) Agent() hypervisor.AgentAddress { return hypervisor.AgentAddress{Kind: "serial"} }
func (v *recVM) Pid() int                       { return os.Getpid() }
func (v *recVM) Done() <-chan struct{}          { return v.done }
func (v *recVM) Err() error                     { return nil }

// newTestSandbox returns a running sandbox over a recording agent and a recVM, with one
// container whose process exited and one never started.
func newTestSandbox(t *testing.T, vm *recVM) (*Sandbox, *recAgent) {
	t.Helper()
	dir := t.TempDir()
	agent, client := startAgent(t, dir)
	share, err := sharefs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	vm.done = make(chan struct{})
	vmm, err := procid.Of(vm.Pid())
	if err != nil {
		t.Fatal(err)
	}
	s := &Sandbox{id: "sb", dir: dir, vm: vm, vmStart: vmm.StartTime, agent: client, share: share, containers: map[string]*Container{}, state: StateRunning}
	for id, st := range map[string]State{"exited": StateStopped, "created": StateCreated} {
		s.containers[id] = &Container{sb: s, id: id, state: st}
	}
	return s, agent
}

func TestDeleteAsksNothingOfTheGuest(t *testing.T) {
	for _, tc := range []struct {
		name    string
		stopErr error
	}{
		{"vm stops", nil},
		{"vm stop fails", errors.New("qemu did not exit")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vm := &recVM{stopErr: tc.stopErr}
			s, agent := newTestSandbox(t, vm)
			ctrs := []*Container{s.containers["exited"], s.containers["created"]}
			err := s.Delete(context.Background())
			if tc.stopErr == nil && err != nil {
				t.Errorf("delete: %v", err)
			}
			if tc.stopErr != nil && (err == nil || !strings.Contains(err.Error(), tc.stopErr.Error())) {
				t.Errorf("delete: got %v, want the stop error", err)
			}
			if got := agent.requests(); len(got) > 0 {
				t.Errorf("agent got %v, want no request: the VM's end tidies the guest", got)
			}
			if !vm.stopped {
				t.Error("vm not stopped")
			}
			// Even when the VM would not stop, the host side is cleaned.
			if _, err := os.Stat(s.dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("sandbox dir: got %v, want it removed", err)
			}
			for _, c := range ctrs {
				if st := c.State(); st != StateStopped {
					t.Errorf("container %s is %s, want stopped", c.id, st)
				}
				if _, err := s.Container(c.id); !errdefs.IsNotFound(err) {
					t.Errorf("container %s: got %v, want it forgotten", c.id, err)
				}
			}
		})
	}
}

// A container that is not the last one is still removed by the guest.
func TestDeleteContainerRemovesInGuest(t *testing.T) {
	vm := &recVM{}
	s, agent := newTestSandbox(t, vm)
	if err := s.DeleteContainer(context.Background(), "exited"); err != nil {
		t.Fatal(err)
	}
	if got, want := agent.requests(), []string{"RemoveContainer"}; !slices.Equal(got, want) {
		t.Errorf("agent got %v, want %v", got, want)
	}
	if vm.stopped {
		t.Error("deleting one container stopped the vm")
	}
	if err := s.Delete(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// The VM stops before the host unmounts what it shares with the guest, and nothing stays
// mounted.
func TestDeleteStopsVMBeforeUnsharing(t *testing.T) {
	testutil.RequiresRoot(t)
	vm := &recVM{}
	s, _ := newTestSandbox(t, vm)
	src := t.TempDir()
	if err := s.share.Publish(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.share.Bind(context.Background(), "exited", "rootfs", src, sharefs.BindOptions{Recursive: true}); err != nil {
		t.Fatal(err)
	}
	var mountedAtStop []string
	vm.atStop = func() { mountedAtStop, _ = sharefs.MountsUnder(s.share.Dir()) }
	if err := s.Delete(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(mountedAtStop) != 2 {
		t.Errorf("mounts when the vm stopped: %v, want the container's rootfs and the view", mountedAtStop)
	}
	if m, _ := sharefs.MountsUnder(s.dir); len(m) > 0 {
		t.Errorf("mounts left after delete: %v", m)
	}
	if _, err := os.Stat(src); err != nil {
		t.Errorf("shared source: %v", err)
	}
}
