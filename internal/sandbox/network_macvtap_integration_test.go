package sandbox

import (
	"context"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vessel-containers/vessel/internal/hypervisor"
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
	root, err := os.MkdirTemp("", "vsn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	sb, err := Create(ctx, Config{
		ID: "mvtsb", Root: root,
		VM:      hypervisor.Config{Kernel: g.Kernel, Initrd: g.Initrd, VCPUs: 1, MemoryMiB: 256},
		Network: network.Config{NetNS: pod.Path, Model: network.ModelMacvtap, VhostNet: true},
	})
	if err != nil {
		t.Fatalf("create sandbox: %v", err)
	}
	deleted := false
	t.Cleanup(func() {
		if !deleted {
			_ = sb.Delete(context.Background())
		}
	})
	e := &env{t: t, sb: sb, root: root}
	if during := strings.Join(pod.Snapshot(t), "\n"); !strings.Contains(during, "vsl_tap0 macvtap") {
		t.Fatalf("no macvtap in the pod netns while the sandbox runs:\n%s", during)
	}

	httpd := e.container("web", []string{"sh", "-c", "mkdir -p /tmp/www && echo hello-macvtap > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www"}, nil)
	st := httpd.Attach(ctx, "", IO{Stdout: io.Discard, Stderr: io.Discard})
	defer st.Close()
	if err := httpd.Start(ctx); err != nil {
		t.Fatalf("start httpd: %v", err)
	}
	var body string
	testutil.WaitFor(t, "the page from httpd at 10.213.94.2:8080", func() bool {
		body, err = fetch(peer, "10.213.94.2:8080")
		return err == nil
	})
	if !strings.Contains(body, "hello-macvtap") {
		t.Fatalf("page: got %q", body)
	}
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

	deleted = true
	pid := sb.VM().Pid()
	if err := sb.Delete(context.Background()); err != nil {
		t.Fatalf("delete: %v", err)
	}
	assertNoLeftovers(t, e.root, pid)
	if after := pod.Snapshot(t); !slices.Equal(after, before) {
		t.Fatalf("pod netns after delete:\n%s\nwant:\n%s", strings.Join(after, "\n"), strings.Join(before, "\n"))
	}
	if got := pod.MAC(t, "eth0").String(); got != mac {
		t.Errorf("eth0's mac after delete: %s, want %s", got, mac)
	}
}
