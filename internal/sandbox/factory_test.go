package sandbox

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/persist"
)

// seamVM is a VM that only starts and reports this process as its VMM.
type seamVM struct {
	cfg     hypervisor.Config
	started bool
	done    chan struct{}
}

func (v *seamVM) Start(context.Context) error { v.started = true; return nil }
func (v *seamVM) Stop(context.Context) error  { return nil }
func (v *seamVM) Pause(context.Context) error { return nil }
func (v *seamVM) Resume(context.Context) error {
	return nil
}
func (v *seamVM) State(context.Context) (hypervisor.State, error) {
	return hypervisor.StateRunning, nil
}
func (v *seamVM) Agent() hypervisor.AgentAddress {
	return hypervisor.AgentAddress{Kind: "serial", Path: v.cfg.StateDir + "/agent.sock"}
}
func (v *seamVM) Pid() int              { return os.Getpid() }
func (v *seamVM) Done() <-chan struct{} { return v.done }
func (v *seamVM) Err() error            { return nil }

// coldBoots records the VMs the "seamtest" driver made.
var coldBoots []*seamVM

func init() {
	hypervisor.Register("seamtest", func(cfg hypervisor.Config) (hypervisor.VM, error) {
		v := &seamVM{cfg: cfg, done: make(chan struct{})}
		coldBoots = append(coldBoots, v)
		return v, nil
	})
}

// fakeSource is a VMSource that returns vm or err and records what it was asked.
type fakeSource struct {
	vm     hypervisor.VM
	err    error
	driver string
	asked  hypervisor.Config
}

func (f *fakeSource) VM(ctx context.Context, driver string, cfg hypervisor.Config) (hypervisor.VM, error) {
	f.driver, f.asked = driver, cfg
	return f.vm, f.err
}

func TestStartVMFromSource(t *testing.T) {
	dir := t.TempDir()
	vmcfg := hypervisor.Config{ID: "sb", StateDir: dir, Kernel: "/k", VCPUs: 2, MemoryMiB: 512}
	warmVM := &seamVM{cfg: vmcfg, done: make(chan struct{})}

	for _, tc := range []struct {
		name     string
		src      VMSource
		wantWarm bool
	}{
		{"no source", nil, false},
		{"source has a vm", &fakeSource{vm: warmVM}, true},
		{"source has none", &fakeSource{err: errors.New("template: differs in kernel_params")}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			coldBoots = nil
			_ = os.Remove(dir + "/state.json")
			vm, warm, err := startVM(context.Background(), Config{ID: "sb", Hypervisor: "seamtest", VMSource: tc.src}, vmcfg)
			if err != nil {
				t.Fatal(err)
			}
			if warm != tc.wantWarm {
				t.Errorf("warm: got %v, want %v", warm, tc.wantWarm)
			}
			if src, ok := tc.src.(*fakeSource); ok && (src.driver != "seamtest" || src.asked.ID != "sb" || src.asked.VCPUs != 2) {
				t.Errorf("source asked for driver %q, config %+v", src.driver, src.asked)
			}
			st, err := persist.Load(dir)
			if tc.wantWarm {
				if vm != hypervisor.VM(warmVM) || len(coldBoots) != 0 {
					t.Errorf("got vm %v and %d cold boots, want the source's vm", vm, len(coldBoots))
				}
				// A warm VM is recorded at once, by pid and start time.
				if err != nil || st.VMPid != os.Getpid() || st.VMStartTime == 0 {
					t.Errorf("recorded state %+v, %v", st, err)
				}
				return
			}
			if len(coldBoots) != 1 || !coldBoots[0].started || vm != hypervisor.VM(coldBoots[0]) {
				t.Errorf("no cold boot: %d vms", len(coldBoots))
			}
			if err == nil {
				t.Errorf("a cold boot recorded state early: %+v", st)
			}
		})
	}
}

func TestIsVMProcessByStartTime(t *testing.T) {
	start, err := hypervisor.ProcessStartTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if !isVMProcess(os.Getpid(), start, "any") {
		t.Error("this process with its start time is not recognized")
	}
	if isVMProcess(os.Getpid(), start+1, "any") {
		t.Error("a recycled pid (other start time) is recognized")
	}
	if isVMProcess(os.Getpid(), 0, "not-this-sandbox") {
		t.Error("without a start time, a process not named after the sandbox is recognized")
	}
}
