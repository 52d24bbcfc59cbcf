package hypervisor_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/hypervisor/hvtest"
)

// plainVM is a VM of the "regtest" driver: it implements no optional interface.
type plainVM struct{ cfg hypervisor.Config }

func (v *plainVM) Start(context.Context) error  { return errdefs.ErrNotImplemented }
func (v *plainVM) Stop(context.Context) error   { return nil }
func (v *plainVM) Pause(context.Context) error  { return errdefs.ErrNotImplemented }
func (v *plainVM) Resume(context.Context) error { return errdefs.ErrNotImplemented }
func (v *plainVM) State(context.Context) (hypervisor.State, error) {
	return hypervisor.StateShutdown, nil
}
func (v *plainVM) Agent() hypervisor.AgentAddress { return hypervisor.AgentAddress{Kind: "serial"} }
func (v *plainVM) Pid() int                       { return 0 }
func (v *plainVM) Done() <-chan struct{}          { return nil }
func (v *plainVM) Err() error                     { return nil }

// created counts the VMs the "regtest" driver made.
var created int

func init() {
	hypervisor.Register("regtest", hypervisor.Driver{
		New: func(cfg hypervisor.Config) (hypervisor.VM, error) {
			created++
			return &plainVM{cfg: cfg}, nil
		},
		Capabilities: hypervisor.Capabilities{SharedFS: []hypervisor.SharedFS{hypervisor.SharedFS9P}},
	})
}

func config() hypervisor.Config {
	return hypervisor.Config{ID: "x", StateDir: "/s", Kernel: "/k", VCPUs: 1, MemoryMiB: 128}
}

func TestUnknownDriver(t *testing.T) {
	_, err := hypervisor.New("firecracker", config())
	if !errdefs.IsNotFound(err) {
		t.Fatalf("New(firecracker): got %v, want not found", err)
	}
	for _, want := range []string{`"firecracker"`, "regtest"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if _, err := hypervisor.CapabilitiesOf("cloud-hypervisor"); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "cloud-hypervisor") {
		t.Errorf("CapabilitiesOf(cloud-hypervisor): got %v, want a not-found error naming it", err)
	}
}

func TestCapabilitiesWithoutVM(t *testing.T) {
	before := created
	caps, err := hypervisor.CapabilitiesOf("regtest")
	if err != nil {
		t.Fatal(err)
	}
	if created != before {
		t.Error("CapabilitiesOf created a VM")
	}
	if caps.Templating || !caps.HasSharedFS(hypervisor.SharedFS9P) || caps.HasSharedFS(hypervisor.SharedFSVirtioFS) {
		t.Errorf("got %+v, want 9p only", caps)
	}
	caps.SharedFS[0] = hypervisor.SharedFSVirtioFS // the caller's copy
	if again, _ := hypervisor.CapabilitiesOf("regtest"); !again.HasSharedFS(hypervisor.SharedFS9P) {
		t.Error("changing a returned Capabilities changed the registry")
	}
}

func TestNewChecksConfigAndSharedFS(t *testing.T) {
	bad := config()
	bad.VCPUs = 0
	if _, err := hypervisor.New("regtest", bad); err == nil || !strings.Contains(err.Error(), "vcpus") {
		t.Errorf("invalid config: got %v, want the vcpus error", err)
	}
	fs := config()
	fs.SharedFS, fs.SharedDir, fs.ShareTag = hypervisor.SharedFSVirtioFS, "/d", "t"
	if _, err := hypervisor.New("regtest", fs); !errors.Is(err, errdefs.ErrNotImplemented) || !strings.Contains(err.Error(), "virtio-fs") {
		t.Errorf("unsupported shared fs: got %v, want ErrNotImplemented naming virtio-fs", err)
	}
	fs.SharedFS = hypervisor.SharedFS9P
	if _, err := hypervisor.New("regtest", fs); err != nil {
		t.Errorf("supported shared fs: %v", err)
	}
}

func TestRegisterTwicePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("second registration of regtest did not panic")
		}
	}()
	hypervisor.Register("regtest", hypervisor.Driver{New: func(hypervisor.Config) (hypervisor.VM, error) { return nil, nil }})
}

// TestConformanceCapabilities runs the suite's capability check on a driver whose VMs
// implement no optional interface and that promises none.
func TestConformanceCapabilities(t *testing.T) {
	hvtest.CheckCapabilities(t, "regtest")
}
