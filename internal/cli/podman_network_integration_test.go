package cli_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/vessel-containers/vessel/internal/testutil"
)

// cniPluginDir is where Debian's containernetworking-plugins puts the CNI plugins.
const cniPluginDir = "/usr/lib/cni"

// TestPodmanPublish runs busybox httpd with podman's default network (CNI here: its
// bridge, host-local addresses from a subnet of the test's, portmap) and a published
// port: podman makes the network namespace and runs CNI before it calls vessel create,
// Vessel attaches the veth when the VM boots, and a request from the host to the published
// port is answered by the container. After `podman rm -f` no iptables rule names the
// container's address or the port, and no interface is left on the bridge.
func TestPodmanPublish(t *testing.T) {
	h := newHarness(t)
	p := newPodman(t, h)
	if _, err := os.Stat(filepath.Join(cniPluginDir, "portmap")); err != nil {
		t.Skipf("CNI plugins not installed (hack/install-deps.sh installs containernetworking-plugins): %v", err)
	}
	// The default network's configuration and subnet are the test's; its bridge is
	// podman's cni-podman0, removed at the end when the test made it.
	conf := fmt.Sprintf("[network]\nnetwork_backend = \"cni\"\ncni_plugin_dirs = [%q]\nnetwork_config_dir = %q\ndefault_subnet = \"10.213.91.0/24\"\n",
		cniPluginDir, filepath.Join(p.dir, "cni"))
	f, err := os.OpenFile(filepath.Join(p.dir, "containers.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteString(conf)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	const bridge = "cni-podman0"
	if _, err := netlink.LinkByName(bridge); err == nil {
		t.Skipf("bridge %s exists already: it is not this test's", bridge)
	}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(bridge); err == nil {
			if err := netlink.LinkDel(l); err != nil {
				t.Errorf("remove bridge %s: %v", bridge, err)
			}
		}
	})
	p.ok("load", "-i", testutil.BuildBusyboxImage(t))
	const port = "38181"
	p.ok("run", "-d", "--name", "web", "-p", port+":80", testutil.BusyboxImageRef,
		"sh", "-c", "mkdir -p /www && echo hello-from-podman > /www/index.html && exec httpd -f -p 80 -h /www")
	out := p.ok("exec", "web", "ip", "-o", "-4", "addr", "show", "eth0")
	m := regexp.MustCompile(`inet (10\.213\.91\.[0-9]+)/24`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("eth0 in the container: %q, want an address in 10.213.91.0/24", out)
	}
	ip := m[1]
	if got := strings.TrimSpace(p.ok("inspect", "web", "--format", "{{.NetworkSettings.IPAddress}}")); got != ip {
		t.Errorf("podman inspect address %q, the guest's eth0 %s", got, ip)
	}

	// httpd starts listening some time after the container started; nothing signals it.
	var body string
	testutil.WaitFor(t, "an answer on the published port", func() bool {
		var err error
		body, err = testutil.HTTPGet("http://127.0.0.1:" + port + "/")
		return err == nil
	})
	if body != "hello-from-podman\n" {
		t.Errorf("published port answered %q, want %q", body, "hello-from-podman\n")
	}
	if rules := testutil.IptablesMentioning(t, ip, port); rules == "" {
		t.Errorf("no iptables rule names %s or port %s while the container runs: is the port published by CNI?", ip, port)
	}

	p.ok("rm", "-f", "web")
	if rules := testutil.IptablesMentioning(t, ip, port); rules != "" {
		t.Errorf("iptables rules left after rm -f:\n%s", rules)
	}
	if l, err := netlink.LinkByName(bridge); err == nil {
		links, err := netlink.LinkList()
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range links {
			if o.Attrs().MasterIndex == l.Attrs().Index {
				t.Errorf("interface %s left on %s after rm -f", o.Attrs().Name, bridge)
			}
		}
	}
}
