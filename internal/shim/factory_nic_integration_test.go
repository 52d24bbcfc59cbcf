package shim_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/vessel-containers/vessel/internal/network/nettest"
)

// TestFactoryNIC runs a sandbox whose pod network namespace holds a veth with a VM from
// the cache, and one with a VM restored from the template: each VM, booted without network
// devices, gets the NIC by hot-plug (no -netdev on its command line), the container sees
// the pod's address and MAC and reaches the peer, and after delete the pod namespace holds
// what it held before.
func TestFactoryNIC(t *testing.T) {
	t.Run("cache", func(t *testing.T) {
		fh := newFactoryHarness(t)
		server := fh.factory(fh.cacheConfig, true)
		fh.serveCache(server, 1)
		fh.nicSandbox(t, "cached-nic", fh.cacheConfig, "-name vessel-cache-")
		if st := server.CacheInfo(context.Background()).Status; st.GetHandedOut() != 1 {
			t.Errorf("handed out %d, want 1", st.GetHandedOut())
		}
	})
	t.Run("template", func(t *testing.T) {
		fh := newFactoryHarness(t)
		fh.nicSandbox(t, "tpl-nic", fh.templateConfig, "-incoming defer")
	})
}

// nicSandbox runs sandbox id with configuration configPath in a pod network namespace with
// a veth to a peer (10.213.92.0/24), checks that its QEMU's command line has fromFactory
// and no NIC, and the container's network; then removes it and checks the namespace.
func (fh *factoryHarness) nicSandbox(t *testing.T, id, configPath, fromFactory string) {
	pod, peer := nettest.New(t), nettest.New(t)
	nettest.Veth(t, pod, "eth0", "10.213.92.2/24", peer, "peer0", "10.213.92.1/24")
	mac := pod.MAC(t, "eth0").String()
	before := pod.Snapshot(t)

	fh.start(id, []string{"--runtime-config-path", configPath, "--with-ns", "network:" + pod.Path}, "sleep", "1000")
	cmdline := fh.qemuCmdline(id)
	if !strings.Contains(cmdline, fromFactory) {
		t.Errorf("vm not from the factory (no %q): %s", fromFactory, cmdline)
	}
	if strings.Contains(cmdline, "-netdev") {
		t.Errorf("the factory's vm has a NIC on its command line: %s", cmdline)
	}
	out := fh.ctr("task", "exec", "--exec-id", "probe", id, "sh", "-c",
		"ip -o -4 addr show eth0; ip -o link show eth0; ping -c 1 -W 10 10.213.92.1")
	for _, want := range []string{"inet 10.213.92.2/24", "link/ether " + mac, "1 packets received"} {
		if !strings.Contains(out, want) {
			t.Errorf("the container's network lacks %q:\n%s", want, out)
		}
	}

	fh.remove(id)
	if after := pod.Snapshot(t); !slices.Equal(after, before) {
		t.Errorf("pod netns after delete:\n%s\nbefore:\n%s", strings.Join(after, "\n"), strings.Join(before, "\n"))
	}
}
