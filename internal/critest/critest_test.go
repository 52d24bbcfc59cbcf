package critest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vessel-containers/vessel/internal/ctrdproc"
	"github.com/vessel-containers/vessel/internal/ociregistry"
	"github.com/vessel-containers/vessel/internal/shimproto"
	"github.com/vessel-containers/vessel/internal/testutil"
)

// The private pod network: a bridge of this test's own and a subnet no host route uses.
const (
	bridgeName = "vcri0"
	podSubnet  = "10.231.0.0/24"
)

// Skipped are the critest specs no run here can pass, with the reason, for runc and Vessel
// alike: each is a regular expression for -ginkgo.skip.
var skipped = []struct{ spec, reason string }{
	{`public image with digest should be pulled and removed`,
		"pins the digest of an image built elsewhere; the images here are built locally"},
	{`port mapping with host port`,
		"host ports need CNI's portmap plugin, which edits the host's shared iptables chains; the private network has none"},
}

// TestCritest runs critest (CRITEST_BIN, `make critest` builds it) against a private
// containerd (CRITEST_CONTAINERD: "1.6", the default, is Debian's; "2" is containerd 2.x
// from testutil.Containerd2Dir, whose results go to CRITEST_OUT/containerd2), once per
// runtime handler in CRITEST_HANDLERS (default "runc vessel"), with
// CRITEST_FOCUS and CRITEST_SKIP passed as -ginkgo.focus and -ginkgo.skip (on top of the
// skipped list). Each handler's JUnit report and log go to CRITEST_OUT/<handler> (default
// _output/critest). When runc and another handler ran, the other handler's results are
// judged against runc's with conformance/critest-exceptions.txt (Compare): a spec runc
// passed that the handler did not, unless listed, and a listed spec the handler passed
// fail the test, and the side-by-side table goes to CRITEST_OUT/results-<handler>.md;
// runc's own failed specs, as the reference, fail nothing. A handler run alone fails the
// test when any of its specs fails.
func TestCritest(t *testing.T) {
	if os.Getenv("VESSEL_CRITEST") != "1" {
		t.Skip("set VESSEL_CRITEST=1 (make critest) to run the CRI validation suite")
	}
	testutil.RequiresVM(t)
	critest := os.Getenv("CRITEST_BIN")
	if critest == "" {
		t.Fatal("CRITEST_BIN names no critest binary (make critest builds one)")
	}
	out := os.Getenv("CRITEST_OUT")
	if out == "" {
		out = filepath.Join(testutil.RepoRoot(t), "_output", "critest")
	}
	if containerd2(t) {
		out = filepath.Join(out, "containerd2")
	}
	handlers := strings.Fields(os.Getenv("CRITEST_HANDLERS"))
	if len(handlers) == 0 {
		handlers = []string{"runc", "vessel"}
	}

	exceptions := readExceptions(t)
	version := "1.6"
	if containerd2(t) {
		version = "2"
	}
	d := startCRI(t, out)

	skip := make([]string, 0, len(skipped)+1)
	for _, s := range skipped {
		skip = append(skip, s.spec)
	}
	if s := os.Getenv("CRITEST_SKIP"); s != "" {
		skip = append(skip, s)
	}
	shmBefore := shmSegments(t)
	results := map[string]Results{}
	for _, h := range handlers {
		t.Run(h, func(t *testing.T) {
			defer removeNewShm(t, shmBefore)
			hOut := filepath.Join(out, h)
			if err := os.MkdirAll(hOut, 0o755); err != nil {
				t.Fatal(err)
			}
			// A report left by an earlier run must not stand in for this run's.
			junit := filepath.Join(hOut, "junit.xml")
			if err := os.Remove(junit); err != nil && !errors.Is(err, fs.ErrNotExist) {
				t.Fatal(err)
			}
			args := []string{
				"-runtime-endpoint", "unix://" + d.Address,
				"-image-endpoint", "unix://" + d.Address,
				"-runtime-handler", h,
				"-ginkgo.no-color",
				"-ginkgo.v",
				"-ginkgo.junit-report", junit,
				"-ginkgo.skip", strings.Join(skip, "|"),
			}
			if f := os.Getenv("CRITEST_FOCUS"); f != "" {
				args = append(args, "-ginkgo.focus", f)
			}
			logf, err := os.Create(filepath.Join(hOut, "critest.log"))
			if err != nil {
				t.Fatal(err)
			}
			defer logf.Close()
			cmd := exec.Command(critest, args...)
			cmd.Dir = hOut
			cmd.Stdout, cmd.Stderr = logf, logf
			t.Logf("critest %s (log %s)", strings.Join(args, " "), logf.Name())
			start := time.Now()
			runErr := cmd.Run()
			var ee *exec.ExitError
			if runErr != nil && !errors.As(runErr, &ee) {
				t.Fatal(runErr)
			}
			res, err := readJUnit(junit)
			if err != nil {
				t.Fatalf("critest with handler %s (%v): %v; see %s", h, runErr, err, logf.Name())
			}
			results[h] = res
			pass, fail, skip := res.Count()
			t.Logf("handler %s: %d passed, %d failed, %d skipped in %s (critest: %v)", h, pass, fail, skip, time.Since(start).Round(time.Second), runErr)
			if runErr != nil && alone(h, handlers) {
				t.Errorf("critest with handler %s: %v; see %s", h, runErr, logf.Name())
			}
		})
	}
	for _, h := range handlers {
		if !judged(h, handlers) || results[h] == nil || results["runc"] == nil {
			continue
		}
		c := Compare(version, results["runc"], results[h], exceptions)
		md := filepath.Join(out, "results-"+h+".md")
		if err := writeMarkdown(md, c, results["runc"], results[h]); err != nil {
			t.Error(err)
		}
		for _, r := range c.Rows {
			if r.Status == Unjudged {
				t.Logf("%s: listed (%s), but runc %s it here: not judged", r.Spec, r.Exception.Kind(), r.Runc)
			}
		}
		for _, p := range c.Problems() {
			t.Errorf("handler %s against runc: %s", h, p)
		}
		t.Logf("handler %s against runc: %s", h, md)
	}
}

// alone reports whether handler h's results stand alone: neither judged against runc's
// nor, as runc's, the reference for another handler's. Only then do its failed specs fail
// the test by themselves.
func alone(h string, handlers []string) bool {
	if h == "runc" {
		return len(handlers) == 1
	}
	return !judged(h, handlers)
}

// judged reports whether handler h's results are judged against runc's: it is not runc,
// and runc ran too.
func judged(h string, handlers []string) bool {
	if h == "runc" {
		return false
	}
	for _, o := range handlers {
		if o == "runc" {
			return true
		}
	}
	return false
}

func readJUnit(path string) (Results, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	res, err := ParseJUnit(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return res, nil
}

func readExceptions(t *testing.T) []Exception {
	t.Helper()
	f, err := os.Open(filepath.Join(testutil.RepoRoot(t), exceptionsFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	list, err := ParseExceptions(f)
	if err != nil {
		t.Fatalf("%s: %v", exceptionsFile, err)
	}
	return list
}

func writeMarkdown(path string, c Comparison, runc, other Results) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := c.Markdown(f, runc, other); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// startCRI starts a containerd of the test's own whose CRI plugin has the handlers runc
// and vessel, with critest's images in a registry it mirrors and the pod network of
// writeCNIConfig; everything is stopped and removed at cleanup, and the daemon's log is
// copied into out.
func startCRI(t *testing.T, out string) *ctrdproc.Daemon {
	t.Helper()
	dir, err := os.MkdirTemp("", "vcri")
	if err != nil {
		t.Fatal(err)
	}
	// Searchable, as the default state root is: the jailed VMM's ids (on by default) reach
	// the sandboxes' exports below it by path.
	if err := os.Chmod(dir, 0o711); err != nil {
		os.RemoveAll(dir)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// What a removed pod or a stopped daemon leaves mounted below dir (containerd's
		// root, a sandbox's shm): deepest first.
		mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
		if err != nil {
			t.Errorf("mounts below %s: %v", dir, err)
		}
		sort.Slice(mounts, func(i, j int) bool { return len(mounts[i].Mountpoint) > len(mounts[j].Mountpoint) })
		for _, m := range mounts {
			if err := unix.Unmount(m.Mountpoint, unix.MNT_DETACH); err != nil {
				t.Errorf("unmount %s: %v", m.Mountpoint, err)
			}
		}
		os.RemoveAll(dir)
	})
	reg := ociregistry.New()
	if err := buildImages(reg, filepath.Join(dir, "images")); err != nil {
		t.Fatal(err)
	}
	regAddr := serveRegistry(t, reg)

	sbRoot := filepath.Join(dir, "sandboxes")
	binDir := testutil.BuildShim(t, shimproto.Options{SandboxRoot: sbRoot})
	vesselCfg := filepath.Join(dir, "vessel.toml")
	if err := os.WriteFile(vesselCfg, testutil.GuestIn(testutil.GuestDir()).Config(""), 0o644); err != nil {
		t.Fatal(err)
	}
	cniDir := filepath.Join(dir, "cni")
	if err := writeCNIConfig(cniDir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(deleteBridge)

	env := ctrdproc.Environ(binDir, "VESSEL_CONFIG="+vesselCfg)
	var d *ctrdproc.Daemon
	if containerd2(t) {
		hosts := filepath.Join(dir, "hosts")
		if err := writeRegistryHosts(hosts, regAddr); err != nil {
			t.Fatal(err)
		}
		bin, ctr := testutil.RequiresContainerd2(t)
		d, err = ctrdproc.NewCRIVersion2(bin, ctr, dir, env, criConfig2(vesselCfg, cniDir, hosts))
	} else {
		d, err = ctrdproc.NewCRI("/usr/bin/containerd", dir, env, criConfig(vesselCfg, cniDir, regAddr))
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Stop(); err != nil {
			t.Logf("containerd exited: %v", err)
		}
		killShims(t, d.Address)
		if t.Failed() {
			t.Logf("containerd log: %s (copied to %s)", d.LogPath, out)
		}
		if err := os.MkdirAll(out, 0o755); err == nil {
			_ = copyFile(d.LogPath, filepath.Join(out, "containerd.log"))
		}
	})
	if err := d.WaitReady(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Runs before the daemon stops: a pod a spec or a client timeout left behind keeps a
	// shim, a VM, a network namespace and mounts that only its removal releases.
	t.Cleanup(func() { removeAllPods(t, d.Address) })
	return d
}

// removeAllPods stops and removes every pod sandbox of the daemon at address through CRI
// (crictl, CRICTL_BIN; without it nothing is removed here and killShims reports what is
// left).
func removeAllPods(t *testing.T, address string) {
	crictl := os.Getenv("CRICTL_BIN")
	if crictl == "" {
		return
	}
	cmd := exec.Command(crictl, "--runtime-endpoint", "unix://"+address, "--timeout", "5m", "rmp", "--all", "--force")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("remove the pods left: %v: %s", err, out)
	}
}

// killShims kills the shims the stopped daemon at address started that still run, and
// their children, and fails the test naming them: every pod should have been removed.
func killShims(t *testing.T, address string) {
	procs, err := os.ReadDir("/proc")
	if err != nil {
		t.Errorf("list processes: %v", err)
		return
	}
	parents := map[string]string{} // pid → ppid
	var shims []string
	for _, p := range procs {
		if _, err := strconv.Atoi(p.Name()); err != nil {
			continue
		}
		if stat, err := os.ReadFile(filepath.Join("/proc", p.Name(), "stat")); err == nil {
			if i := strings.LastIndexByte(string(stat), ')'); i > 0 {
				if f := strings.Fields(string(stat[i+1:])); len(f) > 1 {
					parents[p.Name()] = f[1]
				}
			}
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if err == nil && strings.Contains(string(cmdline), "\x00-address\x00"+address+"\x00") {
			shims = append(shims, p.Name())
		}
	}
	for _, shim := range shims {
		for pid, ppid := range parents {
			if ppid == shim {
				killPid(pid)
			}
		}
		killPid(shim)
		t.Errorf("shim %s of the test's containerd outlived it: killed", shim)
	}
}

func killPid(pid string) {
	if n, err := strconv.Atoi(pid); err == nil {
		_ = unix.Kill(n, unix.SIGKILL)
	}
}

// criConfig is the CRI plugin's section: handlers runc and vessel (reading vesselCfg), CNI
// from cniDir with the Debian plugins, every registry critest names mirrored to the test's
// registry at regAddr, and a streaming server on a loopback port of its own.
func criConfig(vesselCfg, cniDir, regAddr string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.9"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    snapshotter = "overlayfs"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.vessel]
      runtime_type = "io.containerd.vessel.v2"
      privileged_without_host_devices = true
      pod_annotations = ["io.vessel.config.*", "io.katacontainers.config.*"]
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.vessel.options]
        ConfigPath = %q
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %q
`, vesselCfg, cniDir)
	for _, host := range []string{"registry.k8s.io", "gcr.io", "k8s.gcr.io", "docker.io"} {
		fmt.Fprintf(&b, "  [plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.%q]\n    endpoint = [\"http://%s\"]\n", host, regAddr)
	}
	return b.String()
}

// containerd2 reports whether CRITEST_CONTAINERD asks for containerd 2.x ("2") rather than
// Debian's 1.6 ("1.6" or empty); any other value fails the test. When 2.x is asked for but
// not installed the test is skipped locally and fails in CI.
func containerd2(t *testing.T) bool {
	t.Helper()
	switch v := os.Getenv("CRITEST_CONTAINERD"); v {
	case "", "1.6":
		return false
	case "2":
		testutil.RequiresContainerd2(t)
		return true
	default:
		t.Fatalf("CRITEST_CONTAINERD=%q: want 1.6 or 2", v)
		return false
	}
}

// criConfig2 is criConfig in containerd 2.x's config version 3: the CRI plugin is split
// into images, runtime and the gRPC service, and registries are configured by hosts.toml
// files under hostsDir (writeRegistryHosts).
func criConfig2(vesselCfg, cniDir, hostsDir string) string {
	return fmt.Sprintf(`[plugins.'io.containerd.cri.v1.images']
  snapshotter = 'overlayfs'
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = 'registry.k8s.io/pause:3.9'
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = %q
[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = 'runc'
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = 'io.containerd.runc.v2'
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.vessel]
      runtime_type = 'io.containerd.vessel.v2'
      privileged_without_host_devices = true
      pod_annotations = ['io.vessel.config.*', 'io.katacontainers.config.*']
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.vessel.options]
        ConfigPath = %q
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ['/usr/lib/cni']
    conf_dir = %q
[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = '127.0.0.1'
  stream_server_port = '0'
`, hostsDir, vesselCfg, cniDir)
}

// writeRegistryHosts makes the test's registry at regAddr the only host of every registry
// critest's images name, in containerd's hosts.toml layout: nothing is fetched elsewhere.
func writeRegistryHosts(dir, regAddr string) error {
	for _, host := range []string{"registry.k8s.io", "gcr.io", "k8s.gcr.io", "docker.io"} {
		if err := os.MkdirAll(filepath.Join(dir, host), 0o755); err != nil {
			return err
		}
		conf := fmt.Sprintf("server = \"http://%s\"\n\n[host.\"http://%s\"]\n  capabilities = [\"pull\", \"resolve\"]\n", regAddr, regAddr)
		if err := os.WriteFile(filepath.Join(dir, host, "hosts.toml"), []byte(conf), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// writeCNIConfig writes the pod network: bridge vcri0 as the pods' gateway on podSubnet,
// addresses from host-local kept in cniDir.
func writeCNIConfig(cniDir string) error {
	if err := os.MkdirAll(cniDir, 0o755); err != nil {
		return err
	}
	conf, err := json.MarshalIndent(map[string]any{
		"cniVersion": "1.0.0",
		"name":       "vessel-critest",
		"plugins": []any{map[string]any{
			"type": "bridge", "bridge": bridgeName, "isGateway": true, "ipMasq": false, "hairpinMode": true,
			"ipam": map[string]any{
				"type":    "host-local",
				"ranges":  [][]map[string]string{{{"subnet": podSubnet}}},
				"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
				"dataDir": filepath.Join(cniDir, "ipam"),
			},
		}},
	}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(cniDir, "10-vessel-critest.conflist"), conf, 0o644)
}

// deleteBridge removes the bridge the bridge plugin created for the test's pods.
func deleteBridge() {
	if l, err := netlink.LinkByName(bridgeName); err == nil {
		_ = netlink.LinkDel(l)
	}
}

func copyFile(from, to string) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, data, 0o644)
}

// shmSegments lists the ids of the host's System V shared memory segments of critest's
// size (1 MiB) with no process attached (/proc/sysvipc/shm).
func shmSegments(t *testing.T) map[int]bool {
	t.Helper()
	data, err := os.ReadFile("/proc/sysvipc/shm")
	if err != nil {
		t.Fatal(err)
	}
	ids := map[int]bool{}
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 7 || f[3] != "1048576" || f[6] != "0" {
			continue
		}
		if id, err := strconv.Atoi(f[1]); err == nil {
			ids[id] = true
		}
	}
	return ids
}

// removeNewShm removes the unattached segments that are not in before: critest's host IPC
// specs make one on the host (ipcmk -M) each and leave it behind.
func removeNewShm(t *testing.T, before map[int]bool) {
	for id := range shmSegments(t) {
		if before[id] {
			continue
		}
		if _, err := unix.SysvShmCtl(id, unix.IPC_RMID, nil); err != nil {
			t.Logf("remove shared memory segment %d critest made: %v", id, err)
		}
	}
}
