package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
	"github.com/vessel-containers/vessel/internal/agentclient"
	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/network"
	"github.com/vessel-containers/vessel/internal/persist"
)

// seamVM is a VM that only starts and reports this process as its VMM.
type seamVM struct {
	cfg     hypervisor.Config
	started bool
	stopped bool
	done    chan struct{}
}

func (v *seamVM) Start(context.Context) error { v.started = true; return nil }
func (v *seamVM) Stop(context.Context) error  { v.stopped = true; return nil }
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
	hypervisor.Register("seamtest", hypervisor.Driver{New: func(cfg hypervisor.Config) (hypervisor.VM, error) {
		v := &seamVM{cfg: cfg, done: make(chan struct{})}
		coldBoots = append(coldBoots, v)
		return v, nil
	}})
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

// TestBootFallsBackToCold checks which VMs boot starts and stops. The seam VMs have no
// agent, so every connect fails at once (nothing listens on the agent socket): a VM from
// the source that does not answer must be stopped and replaced by a cold boot, and a cold
// VM whose agent does not answer must be stopped too.
func TestBootFallsBackToCold(t *testing.T) {
	dir := t.TempDir()
	vmcfg := hypervisor.Config{ID: "sb", StateDir: dir, Kernel: "/k", VCPUs: 2, MemoryMiB: 512}

	for _, tc := range []struct {
		name        string
		src         *fakeSource
		wantAsked   bool
		wantFactory string
	}{
		{"no source", nil, false, ""},
		{"source's vm does not answer", &fakeSource{vm: &seamVM{cfg: vmcfg, done: make(chan struct{})}}, true, FactoryFailed},
		{"source has none", &fakeSource{err: errors.New("template: differs in kernel_params")}, true, FactoryMiss},
	} {
		t.Run(tc.name, func(t *testing.T) {
			coldBoots = nil
			_ = os.Remove(dir + "/state.json")
			cfg := Config{ID: "sb", Hypervisor: "seamtest", Timeouts: agentclient.Timeouts{Ready: time.Second}}
			if tc.src != nil {
				cfg.VMSource = tc.src
			}
			s := &Sandbox{id: "sb", dir: dir, cfg: cfg}
			err := s.boot(context.Background(), vmcfg, &network.Attachment{}, time.Now())
			if err == nil || !strings.Contains(err.Error(), "dial agent") {
				t.Fatalf("boot: got %v, want the cold vm's dial error", err)
			}
			if tc.wantAsked && (tc.src.driver != "seamtest" || tc.src.asked.ID != "sb" || tc.src.asked.VCPUs != 2) {
				t.Errorf("source asked for driver %q, config %+v", tc.src.driver, tc.src.asked)
			}
			if tc.src != nil && tc.src.vm != nil {
				warm := tc.src.vm.(*seamVM)
				if !warm.stopped {
					t.Error("the source's vm that did not answer was not stopped")
				}
				// A warm VM is recorded at once, by pid and start time, so that a crashed
				// shim's cleanup finds it.
				if st, err := persist.Load(dir); err != nil || st.VMPid != os.Getpid() || st.VMStartTime == 0 {
					t.Errorf("recorded state %+v, %v", st, err)
				}
			}
			if len(coldBoots) != 1 || !coldBoots[0].started || !coldBoots[0].stopped {
				t.Fatalf("want one cold vm, started and stopped: %d vms", len(coldBoots))
			}
			if s.vm != nil && s.vm != hypervisor.VM(coldBoots[0]) {
				t.Errorf("sandbox kept vm %v", s.vm)
			}
			if got := s.FactoryResult(); got != tc.wantFactory {
				t.Errorf("FactoryResult() = %q, want %q", got, tc.wantFactory)
			}
		})
	}
}

// TestWarmVMNotRecordedIsStopped checks that a VM from the source that cannot be recorded
// (its state directory is missing) is stopped at once: an unrecorded VM that is not this
// process's child would outlive a crash with nothing to find it by.
func TestWarmVMNotRecordedIsStopped(t *testing.T) {
	vmcfg := hypervisor.Config{ID: "sb", StateDir: t.TempDir() + "/missing", Kernel: "/k", VCPUs: 1, MemoryMiB: 128}
	warm := &seamVM{cfg: vmcfg, done: make(chan struct{})}
	s := &Sandbox{id: "sb", dir: vmcfg.StateDir, cfg: Config{ID: "sb", Hypervisor: "seamtest", VMSource: &fakeSource{vm: warm}}}
	vm, vmm := s.warmVM(context.Background(), vmcfg)
	if vm != nil || vmm.Pid != 0 {
		t.Errorf("warmVM: got %v, %+v; want no vm", vm, vmm)
	}
	if !warm.stopped {
		t.Error("the unrecorded vm was not stopped")
	}
}

// nicVM is a seamVM that hot-plugs NICs: it records them and fails the one named failID.
type nicVM struct {
	seamVM
	plugged []hypervisor.NIC
	failID  string
}

func (v *nicVM) AttachNIC(_ context.Context, n hypervisor.NIC) (string, error) {
	if n.ID == v.failID {
		return "", errors.New("device_add refused")
	}
	v.plugged = append(v.plugged, n)
	return fmt.Sprintf("02/%02x", len(v.plugged)), nil
}

func (v *nicVM) DetachNIC(context.Context, string) error { return nil }

// TestPlugNICs checks that the sandbox's NICs go into a VM from the factory by hot-plug,
// in order, and that the guest interfaces get their PCI paths only when all went in.
func TestPlugNICs(t *testing.T) {
	att := func() *network.Attachment {
		return &network.Attachment{
			NICs:       []network.NIC{{ID: "vsl-net0", MAC: "02:00:00:00:00:01"}, {ID: "vsl-net1", MAC: "02:00:00:00:00:02"}},
			Interfaces: []*agentv1.Interface{{Name: "eth0"}, {Name: "eth1"}},
		}
	}
	vm := &nicVM{}
	s := &Sandbox{id: "sb", vm: vm}
	a := att()
	if err := s.plugNICs(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	if len(vm.plugged) != 2 || vm.plugged[0].ID != "vsl-net0" || vm.plugged[1].MAC != "02:00:00:00:00:02" {
		t.Errorf("plugged %+v", vm.plugged)
	}
	if a.Interfaces[0].PciPath != "02/01" || a.Interfaces[1].PciPath != "02/02" {
		t.Errorf("pci paths %q %q, want 02/01 02/02", a.Interfaces[0].PciPath, a.Interfaces[1].PciPath)
	}

	failing := &Sandbox{id: "sb", vm: &nicVM{failID: "vsl-net1"}}
	a = att()
	if err := failing.plugNICs(context.Background(), a); err == nil || !strings.Contains(err.Error(), "vsl-net1") {
		t.Errorf("a refused hot-plug: got %v, want an error naming vsl-net1", err)
	}
	if a.Interfaces[0].PciPath != "" {
		t.Errorf("a failed hot-plug left pci path %q for a cold boot", a.Interfaces[0].PciPath)
	}

	cannot := &Sandbox{id: "sb", vm: &seamVM{}}
	if err := cannot.plugNICs(context.Background(), att()); err == nil {
		t.Error("a vm that cannot hot-plug took NICs")
	}
	if err := cannot.plugNICs(context.Background(), &network.Attachment{}); err != nil {
		t.Errorf("no NICs: %v", err)
	}
}

// TestWarmVMSkippedWithoutNICHotplug checks that a sandbox with NICs does not ask the
// factory when its hypervisor cannot hot-plug NICs (the seamtest driver cannot).
func TestWarmVMSkippedWithoutNICHotplug(t *testing.T) {
	vmcfg := hypervisor.Config{ID: "sb", StateDir: t.TempDir(), NICs: []hypervisor.NIC{{ID: "vsl-net0"}}}
	src := &fakeSource{err: errors.New("not asked")}
	s := &Sandbox{id: "sb", dir: vmcfg.StateDir, cfg: Config{ID: "sb", Hypervisor: "seamtest", VMSource: src}}
	if vm, _ := s.warmVM(context.Background(), vmcfg); vm != nil {
		t.Fatal("warmVM returned a vm")
	}
	if src.driver != "" || s.FactoryResult() != FactorySkipped {
		t.Errorf("source asked for %q; factory result %q, want %q", src.driver, s.FactoryResult(), FactorySkipped)
	}
}
