package sandbox

import (
	"context"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vessel-containers/vessel/internal/hypervisor"
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
	root, err := os.MkdirTemp("", "vsn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	sb, err := Create(ctx, Config{
		ID: "mqsb", Root: root,
		VM:      hypervisor.Config{Kernel: g.Kernel, Initrd: g.Initrd, VCPUs: 2, MemoryMiB: 256},
		Network: network.Config{NetNS: pod.Path, Model: network.ModelTCFilter, VhostNet: true},
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

	httpd := e.container("web", []string{"sh", "-c", "mkdir -p /tmp/www && echo hello-mq > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www"}, nil)
	st := httpd.Attach(ctx, "", IO{Stdout: io.Discard, Stderr: io.Discard})
	defer st.Close()
	if err := httpd.Start(ctx); err != nil {
		t.Fatalf("start httpd: %v", err)
	}
	var body string
	testutil.WaitFor(t, "the page from httpd at 10.213.93.2:8080", func() bool {
		body, err = fetch(peer, "10.213.93.2:8080")
		return err == nil
	})
	if !strings.Contains(body, "hello-mq") {
		t.Fatalf("page: got %q", body)
	}

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

	deleted = true
	pid := sb.VM().Pid()
	if err := sb.Delete(context.Background()); err != nil {
		t.Fatalf("delete: %v", err)
	}
	assertNoLeftovers(t, e.root, pid)
	if after := pod.Snapshot(t); !slices.Equal(after, before) {
		t.Fatalf("pod netns after delete:\n%s\nwant:\n%s", strings.Join(after, "\n"), strings.Join(before, "\n"))
	}
}
