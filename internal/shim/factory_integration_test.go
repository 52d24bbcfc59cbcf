package shim_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vessel-containers/vessel/internal/config"
	"github.com/vessel-containers/vessel/internal/factory"
	_ "github.com/vessel-containers/vessel/internal/hypervisor/qemu"
	"github.com/vessel-containers/vessel/internal/idrange"
	"github.com/vessel-containers/vessel/internal/persist"
	"github.com/vessel-containers/vessel/internal/sharefs"
	"github.com/vessel-containers/vessel/internal/shimproto"
	"github.com/vessel-containers/vessel/internal/testutil"
)

// factoryHarness is the containerd harness with Vessel configured for the VM factory: a
// template directory and a cache socket under one temporary root, on the same file system
// as the sandboxes' state (a cached VM's files are renamed into its sandbox's directory).
type factoryHarness struct {
	*harness
	root string
	// coldConfig and templateConfig are configuration files for --runtime-config-path.
	coldConfig, templateConfig, cacheConfig string
}

func newFactoryHarness(t *testing.T) *factoryHarness {
	t.Helper()
	return newFactoryHarnessOn(t, config.DefaultHypervisorPath)
}

// factoryQEMUs are the QEMUs that the template tests run on: the default one and, when
// that is older than 8.2 (Debian 12's 7.2, where templates run with an unjailed VMM), QEMU
// 10 from testutil.NewQEMUDir, where they run with the default jailed VMM.
func factoryQEMUs(t *testing.T) []string {
	t.Helper()
	if major, minor := qemuVersion(t, config.DefaultHypervisorPath); major > 8 || major == 8 && minor >= 2 {
		return []string{config.DefaultHypervisorPath}
	}
	return []string{config.DefaultHypervisorPath, testutil.RequiresNewQEMU(t)}
}

// newFactoryHarnessOn is newFactoryHarness with the QEMU binary qemu in every
// configuration.
func newFactoryHarnessOn(t *testing.T, qemu string) *factoryHarness {
	t.Helper()
	g := testutil.RequiresVM(t)
	root, err := os.MkdirTemp("", "vsf")
	if err != nil {
		t.Fatal(err)
	}
	fh := &factoryHarness{root: root}
	// VM templates with the default jailed VMM need QEMU 8.2 (docs/factory.md): on an
	// older QEMU the harness runs its VMMs as root (vmm_id_range = ""), for the cold and
	// cache configurations too, so that the three boot the same VMM.
	hv := fmt.Sprintf("path = %q\n", qemu)
	if major, minor := qemuVersion(t, qemu); major < 8 || major == 8 && minor < 2 {
		hv += "vmm_id_range = \"\"\n"
	}
	write := func(name, factorySection string) string {
		p := filepath.Join(root, name)
		body := g.Config(fmt.Sprintf("%s[factory]\ntemplate_path = %q\nvm_cache_endpoint = %q\n%s", hv,
			filepath.Join(root, "template"), filepath.Join(root, "cache.sock"), factorySection))
		if err := os.WriteFile(p, body, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	fh.coldConfig = write("cold.toml", "")
	fh.templateConfig = write("template.toml", "enable_template = true\n")
	fh.cacheConfig = write("cache.toml", "vm_cache_number = 2\n")

	sbRoot := filepath.Join(root, "sandboxes")
	if err := os.Mkdir(sbRoot, 0o711); err != nil {
		t.Fatal(err)
	}
	binDir := testutil.BuildShim(t, shimproto.Options{SandboxRoot: sbRoot})
	ctd := testutil.StartContainerd(t, binDir, "VESSEL_CONFIG="+fh.coldConfig)
	fh.harness = &harness{t: t, ctd: ctd, sbRoot: sbRoot}
	t.Cleanup(func() {
		fh.assertNoLeftovers()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := fh.factory(fh.templateConfig, false).DestroyTemplate(ctx); err != nil {
			t.Errorf("destroy template: %v", err)
		}
		fh.assertNoFactoryLeftovers()
		os.RemoveAll(root)
	})
	if _, err := ctd.Ctr(context.Background(), "image", "import", "--all-platforms", testutil.BuildBusyboxImage(t)); err != nil {
		t.Fatal(err)
	}
	return fh
}

// factory is the factory the shim builds from configPath, with the cache on or off.
func (fh *factoryHarness) factory(configPath string, cache bool) *factory.Factory {
	fh.t.Helper()
	cfg, err := config.Load(configPath)
	if err != nil {
		fh.t.Fatal(err)
	}
	host, err := config.DetectHost()
	if err != nil {
		fh.t.Fatal(err)
	}
	return factory.New(factory.ConfigFor(cfg, host, cfg.Factory.EnableTemplate, cache))
}

// assertNoFactoryLeftovers checks that no QEMU of this harness runs and nothing is left
// mounted or on disk under its root but the configuration files.
func (fh *factoryHarness) assertNoFactoryLeftovers() {
	t := fh.t
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), fh.root) && strings.Contains(string(b), "qemu") {
			t.Errorf("qemu left running: %s", strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	if m, _ := sharefs.MountsUnder(fh.root); len(m) > 0 {
		t.Errorf("mounts left: %v", m)
	}
	entries, _ := os.ReadDir(fh.root)
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".toml") && e.Name() != "sandboxes" {
			t.Errorf("left in the factory root: %s", e.Name())
		}
	}
}

// serveCache runs the VM cache server (as `vessel factory init --cache n` does) in this
// process until the test ends or stop is called, and waits until it is full.
func (fh *factoryHarness) serveCache(f *factory.Factory, n int) (stop func()) {
	t := fh.t
	srv, err := f.NewServer(n)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan struct{}), make(chan error, 1)
	go func() { done <- srv.Serve(ctx, func() { close(ready) }) }()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("serve: %v", err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if info := f.CacheInfo(context.Background()); info.Err == nil && len(info.Status.GetReady()) == n {
			return stop
		}
		if time.Now().After(deadline) {
			t.Fatal("the cache did not fill")
		}
		time.Sleep(100 * time.Millisecond) // the cache has no event stream
	}
}

// ctrProbe is what a probe container saw, and its QEMU's command line.
type ctrProbe struct {
	testutil.Probe
	qemuCmdline string
	vmm         vmmView
}

// probe runs testutil.ProbeScript in container id through `ctr run` with the
// configuration file given, and reads its QEMU's command line while it waits.
func (fh *factoryHarness) probe(id, configPath string) ctrProbe {
	t := fh.t
	t.Helper()
	ctx, cancel := fh.ctx()
	defer cancel()
	cmd := fh.ctd.CtrCmd(ctx, "run", "--rm", "--runtime", runtimeName, "--runtime-config-path", configPath,
		testutil.BusyboxImageRef, id, "sh", "-c", testutil.ProbeScript)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := testutil.Lines(stdout)
	next := func() string {
		select {
		case l, ok := <-lines:
			if ok {
				return l
			}
		case <-ctx.Done():
		}
		_ = cmd.Wait()
		t.Fatalf("probe %s: output ended early; stderr: %s", id, stderr.String())
		return ""
	}
	if l := next(); l != "ready" {
		t.Fatalf("probe %s said %q", id, l)
	}
	var p ctrProbe
	p.qemuCmdline = fh.qemuCmdline(id)
	p.vmm = fh.viewVMM(id)
	p.Probe = testutil.ReadProbe(t, stdin, next)
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("ctr run %s: %v: %s", id, err, stderr.String())
	}
	return p
}

// vmPid is the pid of sandbox id's VMM, from its persisted state.
func (fh *factoryHarness) vmPid(id string) int {
	fh.t.Helper()
	st, err := persist.Load(filepath.Join(fh.sbRoot, id))
	if err != nil {
		fh.t.Fatal(err)
	}
	return st.VMPid
}

// qemuCmdline is the command line of sandbox id's VMM, found through its state file.
func (fh *factoryHarness) qemuCmdline(id string) string {
	fh.t.Helper()
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(fh.vmPid(id)) + "/cmdline")
	if err != nil {
		fh.t.Fatal(err)
	}
	return strings.ReplaceAll(string(cmdline), "\x00", " ")
}

// checkProbes asserts what two sandboxes from one source must show: their own hostnames,
// independent random state and a clock within 100 ms of the host's.
func checkProbes(t *testing.T, ids [2]string, ps [2]ctrProbe) {
	t.Helper()
	for i, p := range ps {
		if p.Hostname != ids[i] {
			t.Errorf("%s: hostname %q", ids[i], p.Hostname)
		}
		p.CheckClock(t, ids[i])
	}
	if ps[0].Random == ps[1].Random || len(ps[0].Random) != 32 {
		t.Errorf("two sandboxes read the same random bytes: %q, %q", ps[0].Random, ps[1].Random)
	}
	if ps[0].BootID == ps[1].BootID {
		t.Errorf("two sandboxes have the same boot id %s", ps[0].BootID)
	}
}

func TestFactoryTemplate(t *testing.T) {
	for _, qemu := range factoryQEMUs(t) {
		major, minor := qemuVersion(t, qemu)
		t.Run(fmt.Sprintf("qemu-%d.%d", major, minor), func(t *testing.T) {
			testFactoryTemplate(t, newFactoryHarnessOn(t, qemu), major > 8 || major == 8 && minor >= 2)
		})
	}
}

// testFactoryTemplate runs two sandboxes from a template and a cold one beside them; with
// jailed set the harness's QEMU restores templates read-only and the VMMs must run jailed.
func testFactoryTemplate(t *testing.T, fh *factoryHarness, jailed bool) {
	// No `vessel factory init`: the first sandbox builds the template.
	ids := [2]string{"tpl-one", "tpl-two"}
	var ps [2]ctrProbe
	for i, id := range ids {
		ps[i] = fh.probe(id, fh.templateConfig)
		if !strings.Contains(ps[i].qemuCmdline, "-incoming defer") || !strings.Contains(ps[i].qemuCmdline, "share=off") {
			t.Errorf("%s: vm not restored from the template: %s", id, ps[i].qemuCmdline)
		}
		if ps[i].vmm.inPool != jailed {
			t.Errorf("%s: the vmm runs on an unprivileged slot: %v, want %v (%+v)", id, ps[i].vmm.inPool, jailed, ps[i].vmm.ids)
		}
	}
	checkProbes(t, ids, ps)
	if info, _ := fh.factory(fh.templateConfig, false).TemplateInfo(context.Background()); !info.Present || info.Problem != "" {
		t.Errorf("template after use: %+v", info)
	}
	// A cold sandbox beside them is unaffected.
	if p := fh.probe("cold", fh.coldConfig); strings.Contains(p.qemuCmdline, "-incoming") {
		t.Errorf("cold sandbox restored from a template: %s", p.qemuCmdline)
	}
}

func TestFactoryCache(t *testing.T) {
	type variant struct {
		withTemplate bool
		qemu         string
	}
	variants := []variant{{false, config.DefaultHypervisorPath}}
	for _, qemu := range factoryQEMUs(t) {
		variants = append(variants, variant{true, qemu})
	}
	for _, v := range variants {
		withTemplate := v.withTemplate
		major, minor := qemuVersion(t, v.qemu)
		t.Run(fmt.Sprintf("template=%v/qemu-%d.%d", withTemplate, major, minor), func(t *testing.T) {
			fh := newFactoryHarnessOn(t, v.qemu)
			serverConfig := fh.cacheConfig
			if withTemplate {
				serverConfig = fh.templateConfig
			}
			server := fh.factory(serverConfig, true)
			fh.serveCache(server, 2)
			ids := [2]string{"cached-one", "cached-two"}
			var ps [2]ctrProbe
			for i, id := range ids {
				ps[i] = fh.probe(id, fh.cacheConfig)
				if !strings.Contains(ps[i].qemuCmdline, "-name vessel-cache-") {
					t.Errorf("%s: vm not taken from the cache: %s", id, ps[i].qemuCmdline)
				}
				if got := strings.Contains(ps[i].qemuCmdline, "-incoming defer"); got != withTemplate {
					t.Errorf("%s: cached vm restored from the template: %v, want %v", id, got, withTemplate)
				}
			}
			checkProbes(t, ids, ps)
			if st := server.CacheInfo(context.Background()).Status; st.GetHandedOut() != 2 {
				t.Errorf("handed out %d, want 2", st.GetHandedOut())
			}
		})
	}
}

// vmMemory sums the PSS and RSS (KiB) of the VMMs of sandboxes ids.
func (fh *factoryHarness) vmMemory(ids []string) (pss, rss int) {
	fh.t.Helper()
	for _, id := range ids {
		rollup, err := os.ReadFile("/proc/" + strconv.Itoa(fh.vmPid(id)) + "/smaps_rollup")
		if err != nil {
			fh.t.Fatal(err)
		}
		for _, line := range strings.Split(string(rollup), "\n") {
			var kb int
			if _, err := fmt.Sscanf(line, "Pss: %d kB", &kb); err == nil {
				pss += kb
			}
			if _, err := fmt.Sscanf(line, "Rss: %d kB", &kb); err == nil {
				rss += kb
			}
		}
	}
	return pss, rss
}

// TestFactoryMemory measures the VMMs' total PSS with 10 sandboxes from one template and
// with 10 cold ones: the template's pages are shared.
func TestFactoryMemory(t *testing.T) {
	const n = 10
	fh := newFactoryHarness(t)
	measure := func(name, configPath string) (pss, rss int) {
		ids := make([]string, n)
		for i := range ids {
			ids[i] = fmt.Sprintf("%s-%d", name, i)
			fh.start(ids[i], []string{"--runtime-config-path", configPath}, "sleep", "1000")
		}
		time.Sleep(3 * time.Second) // let the guests settle (free page reporting) before measuring
		pss, rss = fh.vmMemory(ids)
		for _, id := range ids {
			fh.remove(id)
		}
		return pss, rss
	}
	tplPSS, tplRSS := measure("tpl", fh.templateConfig)
	info, err := fh.factory(fh.templateConfig, false).TemplateInfo(context.Background())
	if err != nil || !info.Present {
		t.Fatalf("template: %+v, %v", info, err)
	}
	tplFile := int(info.MemoryTouched >> 10)
	coldPSS, coldRSS := measure("cold", fh.coldConfig)
	t.Logf("%d sandboxes from one template: VMM PSS %d MiB (RSS %d MiB) + template file on tmpfs %d MiB = %d MiB, %d MiB per sandbox",
		n, tplPSS>>10, tplRSS>>10, tplFile>>10, (tplPSS+tplFile)>>10, (tplPSS+tplFile)/n>>10)
	t.Logf("%d cold sandboxes: VMM PSS %d MiB (RSS %d MiB), %d MiB per sandbox", n, coldPSS>>10, coldRSS>>10, coldPSS/n>>10)
	if tplPSS+tplFile >= coldPSS {
		t.Errorf("sandboxes from a template use %d KiB (PSS plus the template file), cold ones %d KiB: want less", tplPSS+tplFile, coldPSS)
	}
}

// TestFactoryStartTimes measures `ctr run --rm IMAGE ID true` with runc and with Vessel
// cold, from a template, from the cache, and from a cache filled from the template. It
// only reports (timings are not behaviour): set VESSEL_FACTORY_TIMES=<runs> to run it.
// Before each cache run it waits until the cache is full again, so it measures a start
// with a VM ready; refills run between runs, not during them.
func TestFactoryStartTimes(t *testing.T) {
	runs, _ := strconv.Atoi(os.Getenv("VESSEL_FACTORY_TIMES"))
	if runs <= 0 {
		t.Skip("set VESSEL_FACTORY_TIMES=<runs> to measure start times")
	}
	fh := newFactoryHarness(t)
	run := func(runtime, configPath, id string) time.Duration {
		ctx, cancel := fh.ctx()
		defer cancel()
		args := []string{"run", "--rm", "--runtime", runtime}
		if configPath != "" {
			args = append(args, "--runtime-config-path", configPath)
		}
		begin := time.Now()
		if out, err := fh.ctd.Ctr(ctx, append(args, testutil.BusyboxImageRef, id, "true")...); err != nil {
			t.Fatalf("%s: %v: %s", id, err, out)
		}
		return time.Since(begin)
	}
	waitFull := func(f *factory.Factory, n int) {
		for i := 0; i < 1200; i++ {
			if st := f.CacheInfo(context.Background()).Status; len(st.GetReady()) == n && st.GetBooting() == 0 {
				return
			}
			time.Sleep(100 * time.Millisecond) // the cache has no event stream
		}
		t.Fatal("cache not full")
	}
	median := func(ds []time.Duration) time.Duration {
		s := append([]time.Duration(nil), ds...)
		for i := range s {
			for j := i + 1; j < len(s); j++ {
				if s[j] < s[i] {
					s[i], s[j] = s[j], s[i]
				}
			}
		}
		return s[len(s)/2]
	}
	measure := func(name, runtime, configPath string, before func()) time.Duration {
		var ds []time.Duration
		run(runtime, configPath, name+"-warmup")
		for i := 0; i < runs; i++ {
			if before != nil {
				before()
			}
			ds = append(ds, run(runtime, configPath, fmt.Sprintf("%s-%d", name, i)))
		}
		m := median(ds)
		t.Logf("%-16s median %6.0f ms of %d runs %v", name, float64(m)/float64(time.Millisecond), runs, ds)
		return m
	}
	runc := measure("runc", "io.containerd.runc.v2", "", nil)
	results := map[string]time.Duration{
		"cold":     measure("cold", runtimeName, fh.coldConfig, nil),
		"template": measure("template", runtimeName, fh.templateConfig, nil),
	}
	cache := fh.factory(fh.cacheConfig, true)
	stop := fh.serveCache(cache, 2)
	results["cache"] = measure("cache", runtimeName, fh.cacheConfig, func() { waitFull(cache, 2) })
	stop()
	both := fh.factory(fh.templateConfig, true) // a cache filled from the template
	fh.serveCache(both, 2)
	results["cache+template"] = measure("cache-template", runtimeName, fh.cacheConfig, func() { waitFull(both, 2) })
	for _, name := range []string{"cold", "template", "cache", "cache+template"} {
		t.Logf("%-16s %.2fx runc", name, float64(results[name])/float64(runc))
	}
}

// TestFactoryCacheShimCrash kills the shim of a sandbox whose VM came from the cache: that
// VM is not the shim's child, so nothing kills it with the shim; `shim delete` must find it
// by its recorded pid and start time. Cleanup asserts no QEMU is left.
func TestFactoryCacheShimCrash(t *testing.T) {
	fh := newFactoryHarness(t)
	fh.serveCache(fh.factory(fh.cacheConfig, true), 1)
	events := fh.ctd.Events(t)
	fh.start("crash", []string{"--runtime-config-path", fh.cacheConfig}, "sleep", "1000")
	if cmdline := fh.qemuCmdline("crash"); !strings.Contains(cmdline, "-name vessel-cache-") {
		t.Fatalf("vm not from the cache: %s", cmdline)
	}
	b, err := os.ReadFile(filepath.Join(fh.sbRoot, "crash", "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		VMPid int `json:"vm_pid"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(fh.shimPid("crash"), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, events, "/tasks/exit", `"crash"`)
	testutil.WaitFor(t, "the task to stop", func() bool { s := fh.taskStatus("crash"); return s == "STOPPED" || s == "" })
	if fh.taskStatus("crash") != "" {
		fh.ctr("task", "delete", "crash")
	}
	fh.ctr("container", "delete", "crash")
	// The cache server (still running) only reaps it; `shim delete` killed it.
	testutil.WaitFor(t, "the vm to exit", func() bool {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", st.VMPid))
		return err != nil || strings.Contains(string(b), ") Z ")
	})
}

// TestFactoryCacheJailed: with hypervisor.vmm_id_range the VM cache boots its VMs
// unprivileged, each on a slot leased for its directory; a sandbox that takes one runs
// on that slot (its lease now names the sandbox), its container's rootfs is idmapped
// into it, and once the sandbox and the cache are gone no lease is left.
func TestFactoryCacheJailed(t *testing.T) {
	const pool = "2000400000-2000596607" // three slots: one cached VM, its replacement, a spare
	fh := newFactoryHarness(t)
	if err := os.Chmod(fh.root, 0o711); err != nil { // the VMMs' ids pass through it
		t.Fatal(err)
	}
	g := testutil.RequiresVM(t)
	jailed := filepath.Join(fh.root, "jailed.toml")
	body := g.Config(fmt.Sprintf("vmm_id_range = %q\n[factory]\nvm_cache_endpoint = %q\nvm_cache_number = 1\n", pool, filepath.Join(fh.root, "cache.sock")))
	if err := os.WriteFile(jailed, body, 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := idrange.ParsePool(pool)
	if err != nil {
		t.Fatal(err)
	}
	leases := func(under string) []string {
		var held []string
		ents, _ := os.ReadDir(idrange.DefaultLeaseDir)
		for _, e := range ents {
			if b, _ := os.ReadFile(filepath.Join(idrange.DefaultLeaseDir, e.Name())); strings.Contains(string(b), under) {
				held = append(held, e.Name()+": "+string(b))
			}
		}
		return held
	}
	stop := fh.serveCache(fh.factory(jailed, true), 1)
	if l := leases(fh.root); len(l) != 1 {
		t.Fatalf("leases of the cache's vm: %q, want one", l)
	}

	const id = "jcached"
	fh.start(id, []string{"--runtime-config-path", jailed}, "sh", "-c", "echo jailed >/jail-wrote && exec sleep 1000")
	if cmd := fh.qemuCmdline(id); !strings.Contains(cmd, "-name vessel-cache-") {
		t.Fatalf("vm not taken from the cache: %s", cmd)
	}
	r, ok, err := idrange.OfProcess(fh.vmPid(id))
	if err != nil || !ok || r.Start < p.Start || r.Start > p.End {
		t.Fatalf("the cached vm's vmm runs on %+v (%v, %v), want a slot of %s", r, ok, err, pool)
	}
	held := leases(filepath.Join(fh.sbRoot, id))
	if len(held) != 1 || !strings.HasPrefix(held[0], strconv.FormatUint(uint64(r.Start), 10)+":") {
		t.Errorf("leases of the sandbox: %q, want the one of slot %d", held, r.Start)
	}
	wrote := findShared(t, fh.vmPid(id), fh.sbRoot, "jail-wrote", 2*time.Minute)
	if wrote == "" {
		t.Fatal("the container did not write its rootfs")
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(wrote, &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != r.Start || st.Gid != r.Start {
		t.Errorf("a file guest root made is owned by %d:%d on the host, want the slot's root %d", st.Uid, st.Gid, r.Start)
	}

	fh.remove(id)
	stop()
	if l := leases(fh.root); len(l) != 0 {
		t.Errorf("leases left after the sandbox and the cache are gone: %q", l)
	}
}

// TestFactoryTemplateJailed: templates with an unprivileged VMM need a QEMU that opens the
// template's memory file read-only (8.2 and newer). On an older QEMU the sandbox's create
// fails with an error naming both settings and the release, instead of booting cold.
func TestFactoryTemplateJailed(t *testing.T) {
	fh := newFactoryHarness(t)
	g := testutil.RequiresVM(t)
	cfgPath := filepath.Join(fh.root, "jailed-template.toml")
	body := g.Config(fmt.Sprintf("vmm_id_range = %q\n[factory]\ntemplate_path = %q\nenable_template = true\n", usernsPool, filepath.Join(fh.root, "template")))
	if err := os.WriteFile(cfgPath, body, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	major, minor := qemuVersion(t, cfg.Hypervisor.Path)
	if major > 8 || major == 8 && minor >= 2 {
		t.Skipf("QEMU %d.%d restores templates read-only; this test covers the refusal on older ones", major, minor)
	}
	got, code := fh.runFlags([]string{"--runtime-config-path", cfgPath}, "jtpl", "true")
	for _, want := range []string{"factory.enable_template", "hypervisor.vmm_id_range", fmt.Sprintf("QEMU %d.%d", major, minor)} {
		if code == 0 || !strings.Contains(got, want) {
			t.Errorf("ctr run with templates and an unprivileged VMM on QEMU %d.%d: exit %d, %q; want a failure naming %s", major, minor, code, got, want)
		}
	}
}

// TestFactoryTemplateJailedReadOnly: on QEMU 8.2 and newer (QEMU 10 from
// testutil.NewQEMUDir) sandboxes restored from a template run with the jailed VMM: each
// on a slot of the pool, with the template's memory file open read-only, and the
// template's files unchanged by them.
func TestFactoryTemplateJailedReadOnly(t *testing.T) {
	qemu := testutil.RequiresNewQEMU(t)
	fh := newFactoryHarness(t)
	g := testutil.RequiresVM(t)
	tplDir := filepath.Join(fh.root, "template")
	cfgPath := filepath.Join(fh.root, "jailed-template.toml")
	body := g.Config(fmt.Sprintf("path = %q\nvmm_id_range = %q\n[factory]\ntemplate_path = %q\nenable_template = true\n", qemu, usernsPool, tplDir))
	if err := os.WriteFile(cfgPath, body, 0o644); err != nil {
		t.Fatal(err)
	}
	pool, err := idrange.ParsePool(usernsPool)
	if err != nil {
		t.Fatal(err)
	}
	ids := [2]string{"jtpl-one", "jtpl-two"}
	var ps [2]ctrProbe
	var digest map[string]string
	for i, id := range ids {
		ps[i] = fh.probe(id, cfgPath)
		cmd := ps[i].qemuCmdline
		if !strings.Contains(cmd, "-incoming defer") || !strings.Contains(cmd, "readonly=on,rom=off") {
			t.Errorf("%s: vm not restored read-only from the template: %s", id, cmd)
		}
		v := ps[i].vmm
		if !v.inPool || v.ids.Start < pool.Start || v.ids.Start > pool.End {
			t.Errorf("%s: the vmm runs on %+v, want a slot of %s", id, v.ids, usernsPool)
		}
		if len(v.memoryFds) == 0 {
			t.Errorf("%s: the vmm holds no descriptor of the template's memory file", id)
		}
		for fd, flags := range v.memoryFds {
			if flags&syscall.O_ACCMODE != syscall.O_RDONLY {
				t.Errorf("%s: the vmm's fd %s of the template's memory file is open with flags %#o, want read-only", id, fd, flags)
			}
		}
		got := digestFiles(t, tplDir)
		if i == 0 {
			digest = got
			continue
		}
		if fmt.Sprint(got) != fmt.Sprint(digest) {
			t.Errorf("the template changed while sandboxes ran from it: %v, was %v", got, digest)
		}
	}
	checkProbes(t, ids, ps)
	for name := range digest {
		if !strings.HasPrefix(name, "memory-") && !strings.HasPrefix(name, "state-") {
			continue // the template's metadata, which no VMM opens
		}
		st, err := os.Stat(filepath.Join(tplDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if sys := st.Sys().(*syscall.Stat_t); sys.Uid != 0 || st.Mode().Perm()&0o222 != 0 {
			t.Errorf("template file %s: owner %d, mode %v; want root's and read-only", name, sys.Uid, st.Mode())
		}
	}
}

// vmmView is what a probe saw of its sandbox's VMM while the container ran.
type vmmView struct {
	ids    idrange.Range
	inPool bool
	// memoryFds maps each descriptor the VMM holds on a template memory file to its
	// open flags (/proc/PID/fdinfo).
	memoryFds map[string]int
}

// viewVMM reads sandbox id's VMM: the host ids it runs as and its template memory fds.
func (fh *factoryHarness) viewVMM(id string) vmmView {
	t := fh.t
	t.Helper()
	pid := strconv.Itoa(fh.vmPid(id))
	r, ok, err := idrange.OfProcess(fh.vmPid(id))
	if err != nil {
		t.Fatal(err)
	}
	v := vmmView{ids: r, inPool: ok, memoryFds: map[string]int{}}
	fds, err := os.ReadDir("/proc/" + pid + "/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		target, err := os.Readlink("/proc/" + pid + "/fd/" + fd.Name())
		if err != nil || !strings.HasPrefix(filepath.Base(target), "memory-") {
			continue
		}
		info, err := os.ReadFile("/proc/" + pid + "/fdinfo/" + fd.Name())
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(info), "\n") {
			if f, ok := strings.CutPrefix(line, "flags:"); ok {
				n, err := strconv.ParseInt(strings.TrimSpace(f), 8, 32)
				if err != nil {
					t.Fatalf("fdinfo %s: %q", fd.Name(), line)
				}
				v.memoryFds[fd.Name()] = int(n)
			}
		}
	}
	return v
}

// digestFiles maps each regular file in dir to its SHA-256.
func digestFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	sums := map[string]string{}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		sums[e.Name()] = fmt.Sprintf("%x", sha256.Sum256(b))
	}
	return sums
}

// qemuVersion is the major and minor version that binary reports.
func qemuVersion(t *testing.T, binary string) (major, minor int) {
	t.Helper()
	out, err := exec.Command(binary, "-version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Sscanf(string(out), "QEMU emulator version %d.%d", &major, &minor); err != nil {
		t.Fatalf("qemu -version: %q: %v", out, err)
	}
	return major, minor
}
