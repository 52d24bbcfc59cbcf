package shim_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/vessel-containers/vessel/internal/tracing/otlptest"
)

// TestTracingTaskPath: with runtime.otlp_endpoint and agent.enable_tracing, a `ctr run`
// sends the spans of its task calls to an in-process OTLP receiver: the create path's
// (the shim's, the sandbox's, the QEMU driver's and the agent's, collected by the shim over
// the agent protocol), then those of Start, Wait and Delete with the sandbox's stop, each
// under its parent, and the phases in the order they happen.
func TestTracingTaskPath(t *testing.T) {
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
	// to the host's after boot, so they are only checked for their place in the tree). The
	// rootfs is mounted between the plan and the container's create: before the VM starts,
	// or after the sandbox when the jailed VMM needs it idmapped into the sandbox's ids.
	order := []string{"shim plan", "qemu start", "agent connect", "sandbox setup", "container create"}
	follows := func(prevName, nextName string) {
		t.Helper()
		prev, _ := otlptest.Find(spans, prevName)
		next, _ := otlptest.Find(spans, nextName)
		if next.Start.Before(prev.End) {
			t.Errorf("%q starts at %s, before %q ends at %s", nextName, next.Start, prevName, prev.End)
		}
	}
	for i := 1; i < len(order); i++ {
		follows(order[i-1], order[i])
	}
	follows("shim plan", "rootfs mount")
	follows("rootfs mount", "container create")
	for _, name := range append(order, "rootfs mount") {
		s, _ := otlptest.Find(spans, name)
		t.Logf("%-18s %8.3fs", name, s.End.Sub(s.Start).Seconds())
	}

	// After Create: Start (down to libcontainer in the guest), Wait, and Delete, which
	// stops the sandbox's VM (the container has exited: the guest is not asked to remove
	// it). Each call is a trace of its own: containerd sends no trace context here.
	later := map[string][]string{
		"container start":             {"shim Start"},
		"agent StartContainer":        {"container start", "shim Start"},
		"vessel-agent StartContainer": {"agent StartContainer", "container start", "shim Start"},
		"libcontainer exec":           {"vessel-agent StartContainer", "agent StartContainer", "container start", "shim Start"},
		"sandbox delete":              {"shim Delete"},
		"vm stop":                     {"sandbox delete", "shim Delete"},
	}
	names = []string{"shim Start", "shim Wait", "shim Delete"}
	for n := range later {
		names = append(names, n)
	}
	spans = recv.WaitFor(t, "the spans of Start, Wait and Delete", 2*time.Minute, func(s []otlptest.Span) bool {
		return otlptest.HasAll(s, names...)
	})
	for _, root := range []string{"shim Start", "shim Wait", "shim Delete"} {
		s, _ := otlptest.Find(spans, root)
		if got := otlptest.Ancestors(spans, s); len(got) != 0 || s.Failed || s.Service != "vessel-shim" {
			t.Errorf("%q: ancestors %v, failed %v, service %q; want a root span of vessel-shim that succeeded", root, got, s.Failed, s.Service)
		}
		if s.Attributes["container.id"] != "traced" {
			t.Errorf("%q: container.id = %q, want traced", root, s.Attributes["container.id"])
		}
	}
	for name, ancestors := range later {
		s, _ := otlptest.Find(spans, name)
		if got := otlptest.Ancestors(spans, s); !slices.Equal(got, ancestors) {
			t.Errorf("ancestors of %q = %v, want %v", name, got, ancestors)
		}
		top, _ := otlptest.Find(spans, ancestors[len(ancestors)-1])
		if s.TraceID != top.TraceID {
			t.Errorf("%q is in trace %s, want %q's %s", name, s.TraceID, top.Name, top.TraceID)
		}
	}
	// Create, Start and Delete follow each other; the VM stops within Delete.
	create, _ := otlptest.Find(spans, "shim Create")
	start, _ := otlptest.Find(spans, "shim Start")
	del, _ := otlptest.Find(spans, "shim Delete")
	stop, _ := otlptest.Find(spans, "vm stop")
	if start.Start.Before(create.End) || del.Start.Before(start.End) {
		t.Errorf("shim Create %s-%s, Start %s-%s, Delete %s-%s: want them one after the other",
			create.Start, create.End, start.Start, start.End, del.Start, del.End)
	}
	if stop.Start.Before(del.Start) || stop.End.After(del.End) {
		t.Errorf("vm stop %s-%s is not within shim Delete %s-%s", stop.Start, stop.End, del.Start, del.End)
	}
	t.Logf("start %.3fs, delete %.3fs (vm stop %.3fs)", start.End.Sub(start.Start).Seconds(), del.End.Sub(del.Start).Seconds(), stop.End.Sub(stop.Start).Seconds())
}
