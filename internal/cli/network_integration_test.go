package cli_test

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/vessel-containers/vessel/internal/network/nettest"
	"github.com/vessel-containers/vessel/internal/testutil"
)

// vethHookArg makes the test binary a createRuntime hook that does what a CNI-running
// manager's hook does (nerdctl's): it adds a veth between the pod netns and a peer netns
// (paths as arguments), with addresses on both ends.
const vethHookArg = "vessel-test-veth-hook"

// vethHook adds eth0 (10.213.12.2/24) in the netns at args[0] and peer0 (10.213.12.1/24)
// in the one at args[1], both up, and returns the exit status.
func vethHook(args []string) int {
	if err := addVeth(args); err != nil {
		fmt.Fprintln(os.Stderr, "veth hook:", err)
		return 1
	}
	return 0
}

func addVeth(args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("want the pod and peer netns paths, got %q", args)
	}
	var handles []netns.NsHandle
	for _, p := range args {
		ns, err := netns.GetFromPath(p)
		if err != nil {
			return err
		}
		defer ns.Close()
		handles = append(handles, ns)
	}
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: "eth0", Namespace: netlink.NsFd(int(handles[0]))},
		PeerName:      "peer0",
		PeerNamespace: netlink.NsFd(int(handles[1])),
	}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("add veth: %w", err)
	}
	for i, side := range []struct{ name, addr string }{{"eth0", "10.213.12.2/24"}, {"peer0", "10.213.12.1/24"}} {
		h, err := netlink.NewHandleAt(handles[i])
		if err != nil {
			return err
		}
		defer h.Close()
		l, err := h.LinkByName(side.name)
		if err != nil {
			return err
		}
		ad, err := netlink.ParseAddr(side.addr)
		if err != nil {
			return err
		}
		if err := h.AddrAdd(l, ad); err != nil {
			return fmt.Errorf("address %s on %s: %w", side.addr, side.name, err)
		}
		if err := h.LinkSetUp(l); err != nil {
			return err
		}
	}
	return nil
}

// TestHookNetwork runs a container whose pod netns is empty at create, with a
// createRuntime hook that adds a veth there (as nerdctl's hook runs CNI): the start
// hot-plugs it, the container sees its address and pings the peer, and once the container
// is gone the netns holds exactly what the hook made.
func TestHookNetwork(t *testing.T) {
	h := newHarness(t)
	testutil.RequiresRoot(t)
	pod, peer := nettest.New(t), nettest.New(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b := h.bundle([]string{"sh", "-c", "ip addr show eth0; ping -c 1 -W 10 10.213.12.1 && echo PING-OK"}, func(s *specs.Spec) {
		for i, ns := range s.Linux.Namespaces {
			if ns.Type == specs.NetworkNamespace {
				s.Linux.Namespaces[i].Path = pod.Path
			}
		}
		s.Hooks = &specs.Hooks{CreateRuntime: []specs.Hook{{Path: exe, Args: []string{exe, vethHookArg, pod.Path, peer.Path}}}}
	})
	out := h.ok("run", "--bundle", b, "hk1")
	for _, want := range []string{"inet 10.213.12.2/24", "link/ether " + pod.MAC(t, "eth0").String(), "PING-OK"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// run deletes the container (and the VM) once the process exited, as runc's does.
	got := pod.Snapshot(t)
	if slices.ContainsFunc(got, func(l string) bool { return strings.Contains(l, "vsl_tap") || strings.Contains(l, "ingress") }) {
		t.Errorf("left in the pod netns after delete:\n%s", strings.Join(got, "\n"))
	}
	if !slices.ContainsFunc(got, func(l string) bool { return strings.HasPrefix(l, "addr eth0 10.213.12.2/24") }) {
		t.Errorf("the hook's veth is gone from the pod netns:\n%s", strings.Join(got, "\n"))
	}
}
