//go:build linux

package agent

import (
	"strings"
	"testing"
)

func TestWriteGuestCPU(t *testing.T) {
	var b strings.Builder
	writeGuestCPU(&b, "cpu  250 0 100 5000 20 0 3 0 0 0\ncpu0 250 0 100 5000 20 0 3 0 0 0\n")
	got := b.String()
	for _, want := range []string{
		`vessel_guest_cpu_seconds_total{mode="user"} 2.5`,
		`vessel_guest_cpu_seconds_total{mode="system"} 1`,
		`vessel_guest_cpu_seconds_total{mode="idle"} 50`,
		`vessel_guest_cpu_seconds_total{mode="softirq"} 0.03`,
		"# TYPE vessel_guest_cpu_seconds_total counter",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	b.Reset()
	writeGuestCPU(&b, "intr 1 2 3\n")
	if b.Len() != 0 {
		t.Errorf("a /proc/stat without a cpu line gave %q, want nothing", b.String())
	}
}
