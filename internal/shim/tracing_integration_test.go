package shim_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/vessel-containers/vessel/internal/tracing/otlptest"
)

// TestTracingCreatePath: with runtime.otlp_endpoint and agent.enable_tracing, a `ctr run`
// sends the create path's spans to an in-process OTLP receiver: the shim's, the sandbox's,
// the QEMU driver's and the agent's (collected by the shim over the agent protocol), each
// under its parent, and the phases in the order they happen.
func TestTracingCreatePath(t *testing.T) {
	recv := otlptest.Start(t)
	h := newHarnessConfig(t, fmt.Sprintf("[runtime]\notlp_endpoint = %q\n[agent]\nenable_tracing = true\n", recv.URL))
	if out, code := h.run("traced", "true"); code != 0 {
		t.Fatalf("ctr run true: exit %d: %s", code, out)
	}
	// The agent's spans are exported when Create returns, the shim's in batches and at
	// its exit at the latest.
	want := map[string][]string{
		"sandbox create":               {"shim Create"},
		"shim plan":                    {"shim Create"},
		"rootfs mount":                 {"shim Create"},
		"qemu start":                   {"sandbox create", "shim Create"},
		"qemu exec":                    {"qemu start", "sandbox create", "shim Create"},
		"qmp connect":                  {"qemu start", "sandbox create", "shim Create"},
		"agent connect":                {"sandbox create", "shim Create"},
		"guest kernel boot":            {"agent connect", "sandbox create", "shim Create"},
		"agent init":                   {"agent connect", "sandbox create", "shim Create"},
		"vessel-agent Check":           {"agent Check", "agent connect", "sandbox create", "shim Create"},
		"sandbox setup":                {"sandbox create", "shim Create"},
		"vessel-agent CreateSandbox":   {"agent CreateSandbox", "sandbox setup", "sandbox create", "shim Create"},
		"storage mount 9p":             {"vessel-agent CreateSandbox", "agent CreateSandbox", "sandbox setup", "sandbox create", "shim Create"},
		"container create":             {"shim Create"},
		"vessel-agent CreateContainer": {"agent CreateContainer", "container create", "shim Create"},
		"libcontainer create":          {"vessel-agent CreateContainer", "agent CreateContainer", "container create", "shim Create"},
		"libcontainer start init":      {"vessel-agent CreateContainer", "agent CreateContainer", "container create", "shim Create"},
	}
	names := []string{"shim Create"}
	for n := range want {
		names = append(names, n)
	}
	spans := recv.WaitFor(t, "the create path's spans", 2*time.Minute, func(s []otlptest.Span) bool {
		return otlptest.HasAll(s, names...)
	})
	root, _ := otlptest.Find(spans, "shim Create")
	if root.Service != "vessel-shim" || root.Failed {
		t.Errorf("shim Create: service %q failed %v; want vessel-shim, ok", root.Service, root.Failed)
	}
	for name, ancestors := range want {
		s, _ := otlptest.Find(spans, name)
		if got := otlptest.Ancestors(spans, s); !slices.Equal(got, ancestors) {
			t.Errorf("ancestors of %q = %v, want %v", name, got, ancestors)
		}
		if s.TraceID != root.TraceID {
			t.Errorf("%q is in trace %s, want the Create's %s", name, s.TraceID, root.TraceID)
		}
		wantService := "vessel-shim"
		if name == "libcontainer create" || name == "libcontainer start init" || name == "storage mount 9p" || name[:min(len(name), 13)] == "vessel-agent " {
			wantService = "vessel-agent"
		}
		if s.Service != wantService {
			t.Errorf("%q comes from %q, want %q", name, s.Service, wantService)
		}
	}
	// The host's phases follow each other (the agent's spans use the guest's clock, synced
	// to the host's after boot, so they are only checked for their place in the tree).
	order := []string{"shim plan", "rootfs mount", "qemu start", "agent connect", "sandbox setup", "container create"}
	for i := 1; i < len(order); i++ {
		prev, _ := otlptest.Find(spans, order[i-1])
		next, _ := otlptest.Find(spans, order[i])
		if next.Start.Before(prev.End) {
			t.Errorf("%q starts at %s, before %q ends at %s", order[i], next.Start, order[i-1], prev.End)
		}
	}
	for _, name := range order {
		s, _ := otlptest.Find(spans, name)
		t.Logf("%-18s %8.3fs", name, s.End.Sub(s.Start).Seconds())
	}
}
