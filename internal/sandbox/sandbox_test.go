package sandbox

import (
	"strings"
	"testing"
	"time"

	"github.com/vessel-containers/vessel/internal/hypervisor"
)

func TestShareStorage(t *testing.T) {
	s := shareStorage(hypervisor.Config{SharedFS: hypervisor.SharedFS9P, Msize9P: 8192})
	if s.Driver != "9p" || s.Source != "vessel-shared" || !strings.Contains(strings.Join(s.Options, ","), "msize=8192") {
		t.Errorf("9p storage: got %+v", s)
	}
	s = shareStorage(hypervisor.Config{SharedFS: hypervisor.SharedFSVirtioFS})
	if s.Driver != "virtiofs" || s.Fstype != "virtiofs" {
		t.Errorf("virtio-fs storage: got %+v", s)
	}
}

func TestMetricSeconds(t *testing.T) {
	text := "# HELP a x\n# TYPE a gauge\nvessel_agent_start_boot_seconds 1.25\nvessel_agent_start_boot_seconds_other 9\n"
	got, ok := metricSeconds(text, "vessel_agent_start_boot_seconds")
	if !ok || got != 1250*time.Millisecond {
		t.Errorf("got %v, %v; want 1.25s, true", got, ok)
	}
	if _, ok := metricSeconds(text, "vessel_agent_ready_boot_seconds"); ok {
		t.Error("found a missing metric")
	}
}
