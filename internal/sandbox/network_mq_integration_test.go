package sandbox

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vessel-containers/vessel/internal/network"
	"github.com/vessel-containers/vessel/internal/network/nettest"
	"github.com/vessel-containers/vessel/internal/testutil"
)

// TestPodNetworkMultiqueue boots a sandbox with 2 vCPUs attached to a pod netns with a
// veth: the tap has two queues, QEMU's NIC is multiqueue (fds=, mq=on, 6 vectors), the
// guest's eth0 has two queue pairs, a page from httpd in the container reaches the peer
// over the pod IP, and after delete the pod netns is as before.
func TestPodNetworkMultiqueue(t *testing.T) {
	g := testutil.RequiresVM(t)
	testutil.RequiresRoot(t)
	pod, peer := nettest.New(t), nettest.New(t)
	nettest.Veth(t, pod, "eth0", "10.213.93.2/24", peer, "peer0", "10.213.93.1/24")
	before := pod.Snapshot(t)

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	e, sb, deleted := netSandboxWith(ctx, t, g, "mqsb", 2, network.Config{NetNS: pod.Path, Model: network.ModelTCFilter, VhostNet: true})
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(sb.VM().Pid()) + "/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	args := strings.ReplaceAll(string(cmdline), "\x00", " ")
	for _, want := range []string{"-netdev tap,id=vsl-net0,fds=", ",mq=on,vectors=6"} {
		if !strings.Contains(args, want) {
			t.Errorf("qemu command line lacks %q: %s", want, args)
		}
	}

	defer serveHTTP(ctx, t, e, peer, "10.213.93.2:8080", "hello-mq")()

	probe := e.container("probe", []string{"sh", "-c", "nproc; ls /sys/class/net/eth0/queues"}, nil)
	code, out, errOut := e.run(probe, nil)
	if code != 0 {
		t.Fatalf("probe exited %d: %s\n%s", code, out, errOut)
	}
	for _, want := range []string{"2\n", "rx-0", "rx-1", "tx-0", "tx-1"} {
		if !strings.Contains(out, want) {
			t.Errorf("probe output lacks %q:\n%s", want, out)
		}
	}

	deleteAndCompare(t, e, sb, deleted, pod, before)
}
