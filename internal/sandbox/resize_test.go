package sandbox

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/containerd/ttrpc"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
	"github.com/vessel-containers/vessel/internal/agentclient"
	"github.com/vessel-containers/vessel/internal/hypervisor"
)

// cpuGuest is a guest agent that keeps its CPUs as the guest kernel does: CPU n sits at
// socket n, core 0, in the order the host plugged them; OnlineCPUMem onlines the
// lowest-numbered offline CPUs, OfflineCPUs the ones at the places given (never CPU 0).
// Other requests fail.
type cpuGuest struct {
	agentv1.AgentService // nil: only OnlineCPUMem is served

	// mu guards online and calls.
	mu     sync.Mutex
	online []bool // by CPU number: plugged CPUs, online or not
	calls  []string
}

func (g *cpuGuest) OnlineCPUMem(_ context.Context, req *agentv1.OnlineCPUMemRequest) (*agentv1.Empty, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.calls = append(g.calls, fmt.Sprintf("OnlineCPUMem(%d)", req.GetNbCpus()))
	n := 0
	for cpu, on := range g.online {
		if !on && (req.GetNbCpus() == 0 || n < int(req.GetNbCpus())) {
			g.online[cpu] = true
			n++
		}
	}
	if req.GetWait() && n < int(req.GetNbCpus()) {
		return nil, fmt.Errorf("onlined %d of %d cpus: %w", n, req.GetNbCpus(), errdefs.ErrUnavailable)
	}
	return &agentv1.Empty{}, nil
}

func (g *cpuGuest) OfflineCPUs(_ context.Context, req *agentv1.OfflineCPUsRequest) (*agentv1.OfflineCPUsResponse, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.calls = append(g.calls, fmt.Sprintf("OfflineCPUs(%d)", len(req.GetPlaces())))
	var cpus []uint32
	for _, p := range req.GetPlaces() {
		cpu := int(p.GetSocketId())
		if cpu == 0 {
			return nil, fmt.Errorf("socket 0 holds cpu0: %w", errdefs.ErrInvalidArgument)
		}
		if cpu < len(g.online) && g.online[cpu] {
			g.online[cpu] = false
			cpus = append(cpus, uint32(cpu))
		}
	}
	return &agentv1.OfflineCPUsResponse{Cpus: cpus}, nil
}

// plug adds n offline CPUs, as the host's hot-plug does.
func (g *cpuGuest) plug(n uint32) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for range n {
		g.online = append(g.online, false)
	}
}

// unplug removes the newest CPUs down to n.
func (g *cpuGuest) unplug(n uint32) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.online = g.online[:n]
}

// onlineCPUs are the numbers of the online CPUs.
func (g *cpuGuest) onlineCPUs() []int {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []int
	for cpu, on := range g.online {
		if on {
			out = append(out, cpu)
		}
	}
	return out
}

func (g *cpuGuest) requests() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := slices.Clone(g.calls)
	g.calls = nil
	return out
}

// resizeVM is a recVM that plugs vCPUs into guest and removes them unless cannot is set
// (as the QEMU driver under TCG); with paused set it answers as a paused VM does.
type resizeVM struct {
	*recVM
	guest   *cpuGuest
	boot    uint32
	cpus    uint32
	mem     uint32
	cannot  error
	paused  bool
	shrinks int
}

func (v *resizeVM) Size() (uint32, uint32) { return v.cpus, v.mem }

func (v *resizeVM) Grow(_ context.Context, vcpus, memoryMiB uint32) error {
	if vcpus > v.cpus {
		v.guest.plug(vcpus - v.cpus)
		v.cpus = vcpus
	}
	v.mem = max(v.mem, memoryMiB)
	return nil
}

func (v *resizeVM) CanShrinkCPUs() error { return v.cannot }

func (v *resizeVM) CPUPlaces(_ context.Context, vcpus uint32) ([]hypervisor.CPUPlace, error) {
	if v.paused {
		return nil, fmt.Errorf("vm is paused: %w", errdefs.ErrFailedPrecondition)
	}
	var out []hypervisor.CPUPlace
	for n := v.cpus; n > max(vcpus, v.boot); n-- {
		out = append(out, hypervisor.CPUPlace{Socket: n - 1})
	}
	return out, nil
}

func (v *resizeVM) ShrinkCPUs(_ context.Context, vcpus uint32) error {
	if v.cannot != nil {
		return v.cannot
	}
	v.shrinks++
	v.cpus = max(vcpus, v.boot)
	v.guest.unplug(v.cpus)
	return nil
}

// newResizeSandbox returns a sandbox over a cpuGuest and a resizeVM booted with one
// online vCPU and 256 MiB.
func newResizeSandbox(t *testing.T, cannot error) (*Sandbox, *resizeVM) {
	t.Helper()
	g := &cpuGuest{online: []bool{true}}
	srv, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	agentv1.RegisterAgentService(srv, g)
	agentv1.RegisterCPUsService(srv, g)
	l, err := net.Listen("unix", filepath.Join(t.TempDir(), "agent.sock"))
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(context.Background(), l)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-served
	})
	conn, err := net.Dial("unix", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	client := agentclient.New(conn, agentclient.Timeouts{})
	t.Cleanup(func() { _ = client.Close() })
	vm := &resizeVM{recVM: &recVM{done: make(chan struct{})}, guest: g, boot: 1, cpus: 1, mem: 256, cannot: cannot}
	s := &Sandbox{id: "sb", vm: vm, vmcfg: hypervisor.Config{VCPUs: 1, MemoryMiB: 256}, agent: client, containers: map[string]*Container{}, state: StateRunning}
	return s, vm
}

// TestParkVCPUs runs grows and shrinks over a VM whose driver cannot remove vCPUs (as QEMU
// under TCG) and one that can: where it cannot, the guest keeps the vCPUs to remove
// plugged and offline (parked), never below the boot size, and a later grow onlines them
// again before it plugs new ones; a grow of memory alone leaves them offline; a paused VM
// keeps its vCPUs. Each step checks the VM's plugged vCPUs, the vCPUs in use, and which
// guest CPUs are online.
func TestParkVCPUs(t *testing.T) {
	tcg := fmt.Errorf("qemu sb: vcpu hot-unplug is not done under TCG: %w", errdefs.ErrNotImplemented)
	type step struct {
		name      string
		shrink    bool // shrinkCPUs to vcpus; else growTo vcpus and mem
		paused    bool
		vcpus     uint32
		mem       uint32
		plugged   uint32
		inUse     uint32
		online    []int
		shrinks   int
		wantCalls []string
	}
	for _, tc := range []struct {
		name   string
		cannot error
		steps  []step
	}{
		{"driver cannot remove vcpus", tcg, []step{
			{name: "grow to 3", vcpus: 3, mem: 256, plugged: 3, inUse: 3, online: []int{0, 1, 2}, wantCalls: []string{"OnlineCPUMem(2)"}},
			{name: "shrink to 1 parks 2", shrink: true, vcpus: 1, plugged: 3, inUse: 1, online: []int{0}, wantCalls: []string{"OfflineCPUs(2)"}},
			{name: "paused keeps its vcpus", shrink: true, paused: true, vcpus: 1, plugged: 3, inUse: 1, online: []int{0}},
			{name: "grow to 2 unparks the oldest", vcpus: 2, mem: 256, plugged: 3, inUse: 2, online: []int{0, 1}, wantCalls: []string{"OnlineCPUMem(0)", "OfflineCPUs(1)"}},
			{name: "memory alone leaves the parked offline", vcpus: 2, mem: 384, plugged: 3, inUse: 2, online: []int{0, 1}, wantCalls: []string{"OnlineCPUMem(0)", "OfflineCPUs(1)"}},
			{name: "grow to 4 unparks, then plugs", vcpus: 4, mem: 384, plugged: 4, inUse: 4, online: []int{0, 1, 2, 3}, wantCalls: []string{"OnlineCPUMem(0)", "OnlineCPUMem(1)"}},
			{name: "shrink to 0 parks down to the boot size", shrink: true, vcpus: 0, plugged: 4, inUse: 1, online: []int{0}, wantCalls: []string{"OfflineCPUs(3)"}},
			{name: "shrink again asks nothing", shrink: true, vcpus: 1, plugged: 4, inUse: 1, online: []int{0}},
			{name: "grow to 4 unparks all", vcpus: 4, mem: 384, plugged: 4, inUse: 4, online: []int{0, 1, 2, 3}, wantCalls: []string{"OnlineCPUMem(0)"}},
		}},
		{"driver removes vcpus", nil, []step{
			{name: "grow to 3", vcpus: 3, mem: 256, plugged: 3, inUse: 3, online: []int{0, 1, 2}, wantCalls: []string{"OnlineCPUMem(2)"}},
			{name: "shrink to 1 unplugs 2", shrink: true, vcpus: 1, plugged: 1, inUse: 1, online: []int{0}, shrinks: 1, wantCalls: []string{"OfflineCPUs(2)"}},
			{name: "grow to 2 plugs", vcpus: 2, mem: 256, plugged: 2, inUse: 2, online: []int{0, 1}, shrinks: 1, wantCalls: []string{"OnlineCPUMem(1)"}},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, vm := newResizeSandbox(t, tc.cannot)
			ctx := context.Background()
			for _, st := range tc.steps {
				vm.paused = st.paused
				s.resizeMu.Lock()
				var err error
				if st.shrink {
					err = s.shrinkCPUs(ctx, vm, vm, st.vcpus)
				} else {
					err = s.growTo(ctx, vm, st.vcpus, st.mem, "for the test")
				}
				s.resizeMu.Unlock()
				if err != nil {
					t.Fatalf("%s: %v", st.name, err)
				}
				if got, _ := vm.Size(); got != st.plugged {
					t.Errorf("%s: %d vcpus plugged, want %d", st.name, got, st.plugged)
				}
				s.resizeMu.Lock()
				inUse := s.vcpusInUse(vm)
				s.resizeMu.Unlock()
				if inUse != st.inUse {
					t.Errorf("%s: %d vcpus in use, want %d", st.name, inUse, st.inUse)
				}
				if got := vm.guest.onlineCPUs(); !slices.Equal(got, st.online) {
					t.Errorf("%s: guest cpus online %v, want %v", st.name, got, st.online)
				}
				if vm.shrinks != st.shrinks {
					t.Errorf("%s: %d unplugs, want %d", st.name, vm.shrinks, st.shrinks)
				}
				if got := vm.guest.requests(); !slices.Equal(got, st.wantCalls) {
					t.Errorf("%s: agent got %v, want %v", st.name, got, st.wantCalls)
				}
			}
		})
	}
}

// TestParkVCPUsOfflineAgain checks that when the guest cannot offline the parked vCPUs
// again after onlining them all, they are all recorded in use, as they are.
func TestParkVCPUsOfflineAgain(t *testing.T) {
	s, vm := newResizeSandbox(t, errors.New("cannot remove vcpus"))
	ctx := context.Background()
	s.resizeMu.Lock()
	defer s.resizeMu.Unlock()
	if err := s.growTo(ctx, vm, 3, 256, "for the test"); err != nil {
		t.Fatal(err)
	}
	if err := s.shrinkCPUs(ctx, vm, vm, 1); err != nil {
		t.Fatal(err)
	}
	// A place the guest refuses (cpu0's), first among the parked, stays parked and makes
	// the offline after the online fail.
	s.parked = append([]hypervisor.CPUPlace{{Socket: 0}}, s.parked...)
	if err := s.growTo(ctx, vm, 2, 256, "for the test"); err != nil {
		t.Fatal(err)
	}
	if got := s.vcpusInUse(vm); got != 3 {
		t.Errorf("%d vcpus in use, want all 3", got)
	}
	if got := vm.guest.onlineCPUs(); !slices.Equal(got, []int{0, 1, 2}) {
		t.Errorf("guest cpus online %v, want all", got)
	}
}
