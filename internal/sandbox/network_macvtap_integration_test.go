package sandbox

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/vessel-containers/vessel/internal/network"
	"github.com/vessel-containers/vessel/internal/network/nettest"
	"github.com/vessel-containers/vessel/internal/testutil"
)

// TestPodNetworkMacvtap boots a sandbox with the macvtap model on a pod netns with a veth
// to a peer: the peer fetches a page from httpd in the container over the pod IP, a probe
// sees the pod's address and MAC and pings the peer, and after delete the pod netns is as
// before (the veth has its MAC and ARP back, the macvtap is gone).
func TestPodNetworkMacvtap(t *testing.T) {
	g := testutil.RequiresVM(t)
	testutil.RequiresRoot(t)
	pod, peer := nettest.New(t), nettest.New(t)
	nettest.Veth(t, pod, "eth0", "10.213.94.2/24", peer, "peer0", "10.213.94.1/24")
	mac := pod.MAC(t, "eth0").String()
	before := pod.Snapshot(t)

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	e, sb, deleted := netSandboxWith(ctx, t, g, "mvtsb", 1, network.Config{NetNS: pod.Path, Model: network.ModelMacvtap, VhostNet: true})
	if during := strings.Join(pod.Snapshot(t), "\n"); !strings.Contains(during, "vsl_tap0 macvtap") {
		t.Fatalf("no macvtap in the pod netns while the sandbox runs:\n%s", during)
	}

	defer serveHTTP(ctx, t, e, peer, "10.213.94.2:8080", "hello-macvtap")()
	probe := e.container("probe", []string{"sh", "-c", "ip addr show eth0; ping -c 1 -W 10 10.213.94.1 && echo PING-OK"}, nil)
	code, out, errOut := e.run(probe, nil)
	if code != 0 {
		t.Fatalf("probe exited %d: %s\n%s", code, out, errOut)
	}
	for _, want := range []string{"inet 10.213.94.2/24", "link/ether " + mac, "PING-OK"} {
		if !strings.Contains(out, want) {
			t.Errorf("probe output lacks %q:\n%s", want, out)
		}
	}

	deleteAndCompare(t, e, sb, deleted, pod, before)
	if got := pod.MAC(t, "eth0").String(); got != mac {
		t.Errorf("eth0's mac after delete: %s, want %s", got, mac)
	}
}
