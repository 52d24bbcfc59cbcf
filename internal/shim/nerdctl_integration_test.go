package shim_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/vessel-containers/vessel/internal/testutil"
)

// cniPluginDir is where Debian's containernetworking-plugins puts the CNI plugins.
const cniPluginDir = "/usr/lib/cni"

// nerdctl runs the nerdctl binary against a harness's containerd, with its own data root
// and CNI network configuration directory (its CNI plugins are Debian's).
type nerdctl struct {
	t        *testing.T
	h        *harness
	bin      string
	dataRoot string
}

func newNerdctl(t *testing.T, h *harness) *nerdctl {
	t.Helper()
	bin := testutil.RequiresTool(t, "nerdctl")
	dataRoot, err := os.MkdirTemp("", "vnd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dataRoot) })
	return &nerdctl{t: t, h: h, bin: bin, dataRoot: dataRoot}
}

// run runs nerdctl with args and returns its stdout and stderr, and the error.
func (n *nerdctl) run(args ...string) (string, string, error) {
	n.t.Helper()
	ctx, cancel := n.h.ctx()
	defer cancel()
	full := append([]string{
		"--address", n.h.ctd.Address, "--namespace", "vessel-test", "--data-root", n.dataRoot, "--cgroup-manager", "cgroupfs",
		"--cni-path", cniPluginDir, "--cni-netconfpath", filepath.Join(n.dataRoot, "cni"),
	}, args...)
	cmd := exec.CommandContext(ctx, n.bin, full...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// must runs nerdctl and fails the test when it fails.
func (n *nerdctl) must(args ...string) string {
	n.t.Helper()
	out, errOut, err := n.run(args...)
	if err != nil {
		n.t.Fatalf("nerdctl %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// loggers lists the logging binaries nerdctl's log driver runs for this data root.
func (n *nerdctl) loggers() string {
	out, _ := exec.Command("pgrep", "-af", "_NERDCTL_INTERNAL_LOGGING").Output()
	var mine []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, n.dataRoot) {
			mine = append(mine, line)
		}
	}
	return strings.Join(mine, "\n")
}

// TestNerdctl runs a detached container with nerdctl as a user would: its log driver is a
// binary:// stdio URI, then logs, exec, pause and unpause, stop and rm.
func TestNerdctl(t *testing.T) {
	h := newHarness(t)
	n := newNerdctl(t, h)
	const name = "vnerd"
	n.must("run", "-d", "--runtime", runtimeName, "--network", "none", "--name", name, testutil.BusyboxImageRef,
		"sh", "-c", "trap 'exit 0' TERM; echo hello; echo oops >&2; while :; do sleep 1; done")
	t.Cleanup(func() {
		if _, errOut, err := n.run("rm", "-f", name); err != nil && !strings.Contains(errOut, "no such container") {
			t.Logf("nerdctl rm -f: %v: %s", err, errOut)
		}
	})
	if n.loggers() == "" {
		t.Error("no logging binary runs for the container")
	}

	// The log driver writes what the logging binary received; nothing signals its arrival.
	var out, errOut string
	testutil.WaitFor(t, "the container's output in nerdctl logs", func() bool {
		var err error
		out, errOut, err = n.run("logs", name)
		return err == nil && strings.Contains(out, "hello") && strings.Contains(errOut, "oops")
	})
	if out != "hello\n" || errOut != "oops\n" {
		t.Errorf("nerdctl logs: stdout %q, stderr %q; want \"hello\\n\", \"oops\\n\"", out, errOut)
	}

	if got := n.must("exec", name, "echo", "exec-ok"); got != "exec-ok\n" {
		t.Errorf("nerdctl exec: got %q", got)
	}

	n.must("pause", name)
	if got := n.must("inspect", "--format", "{{.State.Status}}", name); strings.TrimSpace(got) != "paused" {
		t.Errorf("after pause: status %q", got)
	}
	n.must("unpause", name)
	if got := n.must("exec", name, "echo", "after-unpause"); got != "after-unpause\n" {
		t.Errorf("nerdctl exec after unpause: got %q", got)
	}

	n.must("stop", name)
	if got := n.must("inspect", "--format", "{{.State.Status}}", name); strings.TrimSpace(got) != "exited" {
		t.Errorf("after stop: status %q", got)
	}
	if l := n.loggers(); l != "" {
		t.Errorf("logging binary still runs after the task ended:\n%s", l)
	}
	n.must("rm", name)
	if _, _, err := n.run("inspect", name); err == nil {
		t.Error("the container is still there after rm")
	}
}

// TestNerdctlPublish runs busybox httpd with nerdctl on a bridge network of the test's own
// with a published port, first with runc, then with Vessel: with Vessel, nerdctl's
// createRuntime hook (run by the shim) runs CNI in the namespace the sandbox made, Vessel
// hot-plugs the veth CNI added at start, and a request from the host to the published port
// is answered by the container. After `nerdctl rm -f` no interface is left on the bridge,
// the sandbox left nothing (harness), and the iptables rules left are those runc leaves
// too (CNI's bridge plugin is called without a namespace at nerdctl's poststop and keeps
// the container's masquerade rule); the test removes those.
func TestNerdctlPublish(t *testing.T) {
	h := newHarness(t)
	n := newNerdctl(t, h)
	if _, err := os.Stat(filepath.Join(cniPluginDir, "portmap")); err != nil {
		t.Skipf("CNI plugins not installed (hack/install-deps.sh installs containernetworking-plugins): %v", err)
	}
	linksBefore := hostLinks(t)
	const network = "vslnerd"
	n.must("network", "create", "--subnet", "10.213.90.0/24", network)
	t.Cleanup(func() {
		removeCNIRules(t, network)
		if _, errOut, err := n.run("network", "rm", network); err != nil {
			t.Logf("nerdctl network rm: %v: %s", err, errOut)
		}
		// CNI's bridge plugin leaves the bridge it made; it is the test's.
		for _, l := range hostLinksNotIn(t, linksBefore) {
			if l.Type() == "bridge" {
				if err := netlink.LinkDel(l); err != nil {
					t.Errorf("remove bridge %s: %v", l.Attrs().Name, err)
				}
			}
		}
	})
	left := map[string]string{}
	for _, rt := range []string{"io.containerd.runc.v2", runtimeName} {
		t.Run(rt, func(t *testing.T) { left[rt] = publish(t, n, rt, network, linksBefore) })
	}
	t.Logf("iptables rules left by runc:\n%s", left["io.containerd.runc.v2"])
	if left[runtimeName] != left["io.containerd.runc.v2"] {
		t.Errorf("iptables rules left after rm -f with Vessel:\n%s\nwith runc:\n%s", left[runtimeName], left["io.containerd.runc.v2"])
	}
}

// publish runs the web server with runtime rt on network, checks that the published port
// and the container's address answer, removes the container and checks the bridge. It
// returns the iptables rules left that name the container, with its address and id
// replaced by IP and ID and CNI's per-container chain names by CNI-CHAIN.
func publish(t *testing.T, n *nerdctl, rt, network string, linksBefore map[string]bool) string {
	const name, port = "vnerdweb", "38180"
	n.must("run", "-d", "--runtime", rt, "--network", network, "-p", port+":80", "--name", name, testutil.BusyboxImageRef,
		"sh", "-c", "mkdir -p /www && echo hello-from-nerdctl > /www/index.html && exec httpd -f -p 80 -h /www")
	removed := false
	t.Cleanup(func() {
		if removed {
			return
		}
		if _, errOut, err := n.run("rm", "-f", name); err != nil && !strings.Contains(errOut, "no such container") {
			t.Logf("nerdctl rm -f: %v: %s", err, errOut)
		}
	})
	id := strings.TrimSpace(n.must("inspect", "--format", "{{.ID}}", name))
	// The address CNI gave the pod's veth is eth0's in the container. (With Vessel,
	// nerdctl inspect reads addresses in /proc/<task pid>/ns/net, and the task pid is the
	// shim's, on the host.)
	out := n.must("exec", name, "ip", "-o", "-4", "addr", "show", "eth0")
	m := regexp.MustCompile(`inet (10\.213\.90\.[0-9]+)/24`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("eth0 in the container: %q, want an address in 10.213.90.0/24", out)
	}
	ip := m[1]

	// httpd starts listening some time after the task started; nothing signals it.
	var body string
	testutil.WaitFor(t, "an answer on the published port", func() bool {
		var err error
		body, err = testutil.HTTPGet("http://127.0.0.1:" + port + "/")
		return err == nil
	})
	if body != "hello-from-nerdctl\n" {
		t.Errorf("published port answered %q, want %q", body, "hello-from-nerdctl\n")
	}
	if body, err := testutil.HTTPGet("http://" + ip + ":80/"); err != nil || body != "hello-from-nerdctl\n" {
		t.Errorf("the container's address answered %q, %v", body, err)
	}
	if rules := testutil.IptablesMentioning(t, ip, port); rules == "" {
		t.Errorf("no iptables rule names %s or port %s while the container runs: is the port published by CNI?", ip, port)
	}

	n.must("rm", "-f", name)
	removed = true
	// Only the bridges made since the test began are the network's: other bridges on the
	// host, and the interfaces others add to them meanwhile, are not the test's.
	added := hostLinksNotIn(t, linksBefore)
	bridges := map[int]string{}
	for _, l := range added {
		if l.Type() == "bridge" {
			bridges[l.Attrs().Index] = l.Attrs().Name
		}
	}
	for _, l := range added {
		if br, ok := bridges[l.Attrs().MasterIndex]; ok {
			t.Errorf("interface %s (%s) left on bridge %s after rm -f", l.Attrs().Name, l.Type(), br)
		}
	}
	rules := testutil.IptablesMentioning(t, ip, port)
	rules = strings.ReplaceAll(strings.ReplaceAll(rules, ip, "IP"), id, "ID")
	return regexp.MustCompile(`CNI-[0-9a-f]{24}`).ReplaceAllString(rules, "CNI-CHAIN")
}

// hostLinks lists the names of the host network namespace's links.
func hostLinks(t *testing.T) map[string]bool {
	t.Helper()
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, l := range links {
		names[l.Attrs().Name] = true
	}
	return names
}

// hostLinksNotIn lists the host's links whose names are not in before.
func hostLinksNotIn(t *testing.T, before map[string]bool) []netlink.Link {
	t.Helper()
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var added []netlink.Link
	for _, l := range links {
		if !before[l.Attrs().Name] {
			added = append(added, l)
		}
	}
	return added
}

// removeCNIRules removes the host's nat and filter rules whose comment names CNI network
// network, and the chains they jump to: what CNI leaves after the test's containers.
func removeCNIRules(t *testing.T, network string) {
	t.Helper()
	for _, table := range []string{"nat", "filter"} {
		out, err := exec.Command("iptables-save", "-t", table).Output()
		if err != nil {
			t.Errorf("iptables-save -t %s: %v", table, err)
			continue
		}
		tag := fmt.Sprintf(`name: \"%s\"`, network)
		chains := map[string]bool{}
		for _, line := range strings.Split(string(out), "\n") {
			if !strings.HasPrefix(line, "-A ") || !strings.Contains(line, tag) {
				continue
			}
			f := strings.Fields(line)
			if strings.HasPrefix(f[1], "CNI-") {
				chains[f[1]] = true
				continue
			}
			if j := regexp.MustCompile(`-j (CNI-[0-9a-f]{24})$`).FindStringSubmatch(line); j != nil {
				chains[j[1]] = true
			}
			// The rule as iptables-save printed it, quoted for iptables' own parser: run
			// through sh, which undoes iptables-save's quoting.
			del := "iptables -t " + table + " -D" + strings.TrimPrefix(line, "-A")
			if out, err := exec.Command("sh", "-c", del).CombinedOutput(); err != nil {
				t.Errorf("%s: %v: %s", del, err, out)
			}
		}
		for c := range chains {
			if !regexp.MustCompile(`^CNI-[0-9a-f]{24}$`).MatchString(c) {
				continue // CNI's shared chains (CNI-HOSTPORT-DNAT...) stay, as with runc
			}
			for _, op := range []string{"-F", "-X"} {
				if out, err := exec.Command("iptables", "-t", table, op, c).CombinedOutput(); err != nil {
					t.Errorf("iptables -t %s %s %s: %v: %s", table, op, c, err, out)
				}
			}
		}
	}
}
