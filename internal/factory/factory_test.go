package factory

import (
	"context"
	"strings"
	"testing"

	"github.com/vessel-containers/vessel/internal/config"
	"github.com/vessel-containers/vessel/internal/hypervisor"
	_ "github.com/vessel-containers/vessel/internal/hypervisor/qemu"
)

func init() {
	// A driver that boots VMs but cannot template them.
	hypervisor.Register("notemplates", hypervisor.Driver{
		New:          func(hypervisor.Config) (hypervisor.VM, error) { return nil, nil },
		Capabilities: hypervisor.Capabilities{SharedFS: []hypervisor.SharedFS{hypervisor.SharedFS9P}},
	})
}

// TestFromConfigAsksTheDriver checks that the factory is on only for a driver whose
// registered capabilities include templating, and that an unknown driver is named.
func TestFromConfigAsksTheDriver(t *testing.T) {
	host := config.Host{CPUs: 4, MemoryMiB: 8192}
	for _, tc := range []struct {
		driver     string
		wantOn     bool
		wantReason string
	}{
		{"qemu", true, ""},
		{"notemplates", false, "no templating capability"},
		{"firecracker", false, `"firecracker" is not built into this binary (built: notemplates, qemu`},
	} {
		t.Run(tc.driver, func(t *testing.T) {
			if got := driverUnsupported(tc.driver); !strings.Contains(got, tc.wantReason) || (tc.wantReason == "") != (got == "") {
				t.Errorf("driverUnsupported: got %q, want %q", got, tc.wantReason)
			}
			c := config.Default()
			c.Hypervisor.Driver = tc.driver
			c.Hypervisor.Initrd = "/initramfs.img"
			c.Hypervisor.Image = ""
			c.Hypervisor.SharedFS = hypervisor.SharedFS9P
			c.Factory.EnableTemplate = true
			c.Factory.TemplatePath = t.TempDir()
			f := FromConfig(context.Background(), c, host)
			if got := f != nil; got != tc.wantOn {
				t.Fatalf("factory on: got %v, want %v", got, tc.wantOn)
			}
			if f != nil && (f.cfg.Driver != tc.driver || f.tpl == nil) {
				t.Errorf("factory config: driver %q, template store %v", f.cfg.Driver, f.tpl != nil)
			}
		})
	}
}
