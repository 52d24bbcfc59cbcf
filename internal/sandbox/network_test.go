package sandbox

import (
	"context"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/vessel-containers/vessel/internal/network"
	"github.com/vessel-containers/vessel/internal/network/nettest"
	"github.com/vessel-containers/vessel/internal/oci"
	"github.com/vessel-containers/vessel/internal/testutil"
)

// TestCreateContainerNetworkRefused fails a container create whose rescan of the pod
// netns finds an interface that cannot be attached (a bridge): the error names it, the
// container id is free again and nothing was added to the netns. No VM is needed: the
// rescan fails before anything reaches the VM or the guest.
func TestCreateContainerNetworkRefused(t *testing.T) {
	testutil.RequiresRoot(t)
	pod := nettest.New(t)
	dir := t.TempDir()
	ctx := context.Background()
	cfg := network.Config{NetNS: pod.Path}
	if _, err := network.Attach(ctx, dir, cfg); err != nil {
		t.Fatal(err)
	}
	if err := pod.Handle(t).LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br9"}}); err != nil {
		t.Fatal(err)
	}
	before := pod.Snapshot(t)
	s := &Sandbox{id: "sb", dir: dir, cfg: Config{Network: cfg}, containers: map[string]*Container{}, state: StateRunning}
	_, err := s.CreateContainer(ctx, ContainerConfig{Plan: &oci.Container{ID: "c1"}})
	if err == nil || !strings.Contains(err.Error(), "br9") {
		t.Fatalf("got %v, want an error naming br9", err)
	}
	if _, err := s.Container("c1"); err == nil {
		t.Error("the id of the failed container is still taken")
	}
	if after := pod.Snapshot(t); strings.Join(after, "\n") != strings.Join(before, "\n") {
		t.Errorf("netns after the refusal:\n%s\nwant:\n%s", strings.Join(after, "\n"), strings.Join(before, "\n"))
	}
}
