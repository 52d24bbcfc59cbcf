package factory_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vessel-containers/vessel/internal/bundle"
	"github.com/vessel-containers/vessel/internal/factory"
	"github.com/vessel-containers/vessel/internal/hypervisor"
	_ "github.com/vessel-containers/vessel/internal/hypervisor/qemu"
	"github.com/vessel-containers/vessel/internal/oci"
	"github.com/vessel-containers/vessel/internal/sandbox"
	"github.com/vessel-containers/vessel/internal/sharefs"
	"github.com/vessel-containers/vessel/internal/testutil"
)

// fixture is a factory over a temporary template directory and sandbox root, checked for
// leftovers (processes, mounts, files) at cleanup.
type fixture struct {
	t    *testing.T
	root string // holds sandboxes/, template/, cache.sock, vmcache/
	base hypervisor.Config
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	g := testutil.RequiresVM(t)
	// A short root: unix socket paths are limited to 108 bytes.
	root, err := os.MkdirTemp("", "vfx")
	if err != nil {
		t.Fatal(err)
	}
	fx := &fixture{t: t, root: root, base: hypervisor.Config{
		Kernel: g.Kernel, Initrd: g.Initrd, SharedFS: hypervisor.SharedFS9P,
		VCPUs: 1, MaxVCPUs: 2, MemoryMiB: 256, MaxMemoryMiB: 768, MemorySlots: 4,
	}}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := fx.factory(true, false).DestroyTemplate(ctx); err != nil {
			t.Errorf("destroy template: %v", err)
		}
		fx.assertNoLeftovers()
		os.RemoveAll(root)
	})
	return fx
}

func (fx *fixture) factory(template, cache bool) *factory.Factory {
	cfg := factory.Config{Driver: "qemu", Base: fx.base}
	if template {
		cfg.TemplatePath = filepath.Join(fx.root, "template")
	}
	if cache {
		cfg.CacheEndpoint = filepath.Join(fx.root, "cache.sock")
	}
	return factory.New(cfg)
}

// assertNoLeftovers checks that no QEMU of this fixture runs and no mount or file is left.
func (fx *fixture) assertNoLeftovers() {
	t := fx.t
	t.Helper()
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && strings.Contains(string(b), fx.root) && strings.Contains(string(b), "qemu") {
			t.Errorf("qemu left running: %s", strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	if m, _ := sharefs.MountsUnder(fx.root); len(m) > 0 {
		t.Errorf("mounts left: %v", m)
	}
	var files []string
	_ = filepath.Walk(fx.root, func(path string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			files = append(files, path)
		}
		return nil
	})
	if len(files) > 0 {
		t.Errorf("files left: %v", files)
	}
}

// sandbox creates a sandbox of vcpus and memMiB from src (nil: cold) and deletes it at
// cleanup.
func (fx *fixture) sandbox(id string, src sandbox.VMSource, vcpus, memMiB uint32) *sandbox.Sandbox {
	fx.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	vm := fx.base
	vm.VCPUs, vm.MaxVCPUs, vm.MemoryMiB, vm.MaxMemoryMiB = vcpus, vcpus, memMiB, memMiB
	cfg := sandbox.Config{ID: id, Root: filepath.Join(fx.root, "sandboxes"), VM: vm}
	if src != nil {
		cfg.VMSource = src
	}
	sb, err := sandbox.Create(ctx, cfg)
	if err != nil {
		fx.t.Fatalf("create sandbox %s: %v", id, err)
	}
	fx.t.Cleanup(func() {
		if err := sb.Delete(context.Background()); err != nil {
			fx.t.Errorf("delete sandbox %s: %v", id, err)
		}
	})
	return sb
}

// runProbe runs testutil.ProbeScript in a new container of sb.
func runProbe(t *testing.T, sb *sandbox.Sandbox, id string) testutil.Probe {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	spec, err := bundle.CreateBusybox(dir, []string{"sh", "-c", testutil.ProbeScript}, false)
	if err != nil {
		t.Fatal(err)
	}
	spec.Hostname = "" // see the sandbox's hostname
	plan, err := oci.ContainerConfig(ctx, id, dir, spec, oci.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := sb.CreateContainer(ctx, sandbox.ContainerConfig{Plan: plan, Stdin: true})
	if err != nil {
		t.Fatalf("create container: %v", err)
	}
	defer func() { _ = sb.DeleteContainer(context.Background(), id) }()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	st := c.Attach(ctx, "", sandbox.IO{Stdin: inR, Stdout: outW})
	defer st.Close()
	if err := c.Start(ctx); err != nil {
		t.Fatalf("start: %v", err)
	}
	lines := testutil.Lines(outR)
	next := func() string {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("probe output ended early")
			}
			return l
		case <-ctx.Done():
			t.Fatal("probe timed out")
		}
		return ""
	}
	if l := next(); l != "ready" {
		t.Fatalf("probe said %q, want ready", l)
	}
	p := testutil.ReadProbe(t, inW, next)
	inW.Close()
	if code, err := c.Wait(ctx, ""); err != nil || code != 0 {
		t.Fatalf("probe exit %d, %v", code, err)
	}
	outW.Close()
	return p
}

func TestTemplateSandboxes(t *testing.T) {
	fx := newFixture(t)
	f := fx.factory(true, false)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := f.BuildTemplate(ctx); err != nil {
		t.Fatalf("build template: %v", err)
	}
	mems, _ := filepath.Glob(filepath.Join(fx.root, "template", "memory-*"))
	states, _ := filepath.Glob(filepath.Join(fx.root, "template", "state-*"))
	if len(mems) != 1 || len(states) != 1 {
		t.Fatalf("template files: %v %v", mems, states)
	}
	for _, p := range append(mems, states...) {
		if st, err := os.Stat(p); err != nil || st.Mode().Perm() != 0o444 {
			t.Errorf("template file %s: %v, mode %v; want 0444", p, err, st.Mode())
		}
	}
	memBefore := fileDigest(t, mems[0])
	begin := time.Now()
	a := fx.sandbox("tpl-a", f, 1, 256)
	t.Logf("sandbox from template in %s", time.Since(begin))
	// The second sandbox is bigger than the template: it is grown by hotplug.
	b := fx.sandbox("tpl-b", f, 2, 512)
	pa, pb := runProbe(t, a, "c"), runProbe(t, b, "c")
	if pa.Hostname != "tpl-a" || pb.Hostname != "tpl-b" {
		t.Errorf("hostnames %q, %q: want tpl-a, tpl-b", pa.Hostname, pb.Hostname)
	}
	if pa.Random == pb.Random || len(pa.Random) != 32 {
		t.Errorf("two VMs from one template read the same random bytes: %q, %q", pa.Random, pb.Random)
	}
	if pa.BootID == pb.BootID {
		t.Errorf("two VMs from one template have the same boot id %s", pa.BootID)
	}
	pa.CheckClock(t, "tpl-a")
	pb.CheckClock(t, "tpl-b")
	if pa.CPUs != 1 || pb.CPUs != 2 {
		t.Errorf("vcpus: %d and %d, want 1 and 2 (hot-plugged)", pa.CPUs, pb.CPUs)
	}
	if pb.MemKiB-pa.MemKiB < 200<<10 {
		t.Errorf("memory: %d kB and %d kB, want the second ~256 MiB bigger (hot-plugged)", pa.MemKiB, pb.MemKiB)
	}
	// Each sandbox owns its VM's sockets.
	for _, sb := range []*sandbox.Sandbox{a, b} {
		if got := sb.VM().Agent().Path; filepath.Dir(got) != sb.Dir() {
			t.Errorf("agent socket %s is not in the sandbox dir %s", got, sb.Dir())
		}
		// The clone maps the template's memory privately (copy-on-write), never shared.
		maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", sb.VM().Pid()))
		if err != nil {
			t.Fatal(err)
		}
		mapped := 0
		for _, line := range strings.Split(string(maps), "\n") {
			if f := strings.Fields(line); len(f) >= 6 && f[len(f)-1] == mems[0] {
				mapped++
				if perms := f[1]; perms[3] != 'p' {
					t.Errorf("vm of %s maps the template memory %s shared: %s", sb.ID(), mems[0], line)
				}
			}
		}
		if mapped == 0 {
			t.Errorf("vm of %s does not map the template memory %s", sb.ID(), mems[0])
		}
	}
	// The clones ran and wrote their guest memory; the template is unchanged.
	if got := fileDigest(t, mems[0]); got != memBefore {
		t.Error("template memory changed while clones ran")
	}
}

// fileDigest is the SHA-256 of the file at path.
func fileDigest(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// serve runs a cache server of n VMs until the test ends.
func (fx *fixture) serve(f *factory.Factory, n int) {
	fx.t.Helper()
	srv, err := f.NewServer(n)
	if err != nil {
		fx.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, func() { close(ready) }) }()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		fx.t.Fatalf("serve: %v", err)
	}
	fx.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			fx.t.Errorf("serve: %v", err)
		}
	})
}

// waitCache waits until the cache reports cond.
func waitCache(t *testing.T, f *factory.Factory, what string, cond func(factory.CacheInfo) bool) factory.CacheInfo {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		info := f.CacheInfo(context.Background())
		if info.Err == nil && cond(info) {
			return info
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for the cache: %s (last: %+v, %v)", what, info.Status, info.Err)
		}
		time.Sleep(100 * time.Millisecond) // the cache has no event stream to wait on
	}
}

func readyN(n int) func(factory.CacheInfo) bool {
	return func(i factory.CacheInfo) bool { return len(i.Status.GetReady()) >= n }
}

func TestCacheSandboxes(t *testing.T) {
	for _, withTemplate := range []bool{false, true} {
		t.Run(fmt.Sprintf("template=%v", withTemplate), func(t *testing.T) {
			fx := newFixture(t)
			server := fx.factory(withTemplate, true)
			fx.serve(server, 2)
			info := waitCache(t, server, "2 ready", readyN(2))
			cached := map[int]bool{}
			for _, vm := range info.Status.GetReady() {
				cached[int(vm.GetPid())] = true
				if vm.GetFromTemplate() != withTemplate {
					t.Errorf("cached vm %s from template: %v, want %v", vm.GetVmId(), vm.GetFromTemplate(), withTemplate)
				}
			}
			// Shims use the cache only, as with vm_cache_number > 0 and no template.
			shim := fx.factory(false, true)
			begin := time.Now()
			a := fx.sandbox("cache-a", shim, 1, 256)
			t.Logf("sandbox from cache in %s", time.Since(begin))
			b := fx.sandbox("cache-b", shim, 2, 512)
			for _, sb := range []*sandbox.Sandbox{a, b} {
				if !cached[sb.VM().Pid()] {
					t.Errorf("sandbox %s runs in pid %d, not one of the cached vms %v", sb.ID(), sb.VM().Pid(), cached)
				}
			}
			st := waitCache(t, server, "refilled", readyN(2)).Status
			if st.GetHandedOut() != 2 {
				t.Errorf("handed out %d, want 2", st.GetHandedOut())
			}
			pa, pb := runProbe(t, a, "c"), runProbe(t, b, "c")
			if pa.Hostname != "cache-a" || pb.Hostname != "cache-b" {
				t.Errorf("hostnames %q, %q", pa.Hostname, pb.Hostname)
			}
			if pa.Random == pb.Random || pa.BootID == pb.BootID {
				t.Errorf("two cached VMs share random state: %q/%q, %s/%s", pa.Random, pb.Random, pa.BootID, pb.BootID)
			}
			pa.CheckClock(t, "cache-a")
			pb.CheckClock(t, "cache-b")
			if pb.CPUs != 2 {
				t.Errorf("vcpus of the grown cached vm: %d, want 2", pb.CPUs)
			}
			for _, sb := range []*sandbox.Sandbox{a, b} {
				// The cache warmed the VM up (agent WarmUp) before handing it out; the
				// sandbox's own CreateSandbox above shows the warm-up left no sandbox.
				console, err := os.ReadFile(filepath.Join(sb.Dir(), hypervisor.ConsoleLogName))
				if err != nil || !bytes.Contains(console, []byte(`msg="warmed up"`)) {
					t.Errorf("console of %s shows no agent warm-up (%v)", sb.ID(), err)
				}
				if got := sb.VM().Agent().Path; filepath.Dir(got) != sb.Dir() {
					t.Errorf("agent socket %s is not in the sandbox dir %s", got, sb.Dir())
				}
			}
		})
	}
}

func TestCacheReplacesDeadVM(t *testing.T) {
	fx := newFixture(t)
	f := fx.factory(false, true)
	fx.serve(f, 1)
	st := waitCache(t, f, "1 ready", readyN(1)).Status
	victim := st.GetReady()[0]
	p, err := os.FindProcess(int(victim.GetPid()))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	st = waitCache(t, f, "a replacement", func(i factory.CacheInfo) bool {
		r := i.Status.GetReady()
		return i.Status.GetDiscarded() == 1 && len(r) == 1 && r[0].GetVmId() != victim.GetVmId()
	}).Status
	t.Logf("dead vm %s replaced by %s", victim.GetVmId(), st.GetReady()[0].GetVmId())
}

func TestColdBootFallbacks(t *testing.T) {
	fx := newFixture(t)
	t.Run("no cache server", func(t *testing.T) {
		sb := fx.sandbox("nocache", fx.factory(false, true), 1, 256)
		if p := runProbe(t, sb, "c"); p.Hostname != "nocache" {
			t.Errorf("hostname %q", p.Hostname)
		}
	})
	t.Run("config mismatch", func(t *testing.T) {
		f := fx.factory(true, false)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := f.BuildTemplate(ctx); err != nil {
			t.Fatal(err)
		}
		old, _ := f.TemplateInfo(ctx)
		// A pod whose kernel parameters differ cannot use the template: it boots cold and
		// the template is left alone.
		vm := fx.base
		vm.KernelParams = []string{"vessel.test=1"}
		_, err := f.VM(ctx, "qemu", vm)
		if err == nil || !strings.Contains(err.Error(), "kernel_params") {
			t.Errorf("VM for another configuration: got %v, want an error naming kernel_params", err)
		}
		if now, _ := f.TemplateInfo(ctx); now.Created != old.Created {
			t.Error("template rebuilt for a pod's configuration")
		}
	})
}

func TestTemplateRebuilt(t *testing.T) {
	fx := newFixture(t)
	f := fx.factory(true, false)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := f.BuildTemplate(ctx); err != nil {
		t.Fatal(err)
	}
	first, _ := f.TemplateInfo(ctx)
	tplDir := filepath.Join(fx.root, "template")

	t.Run("corrupt", func(t *testing.T) {
		states, _ := filepath.Glob(filepath.Join(tplDir, "state-*"))
		if len(states) != 1 {
			t.Fatalf("state files: %v", states)
		}
		if err := os.WriteFile(states[0], []byte("garbage"), 0o600); err != nil {
			t.Fatal(err)
		}
		if info, _ := f.TemplateInfo(ctx); !strings.Contains(info.Problem, "corrupt") {
			t.Errorf("status of a corrupt template: %q", info.Problem)
		}
		sb := fx.sandbox("after-corrupt", f, 1, 256)
		if p := runProbe(t, sb, "c"); p.Hostname != "after-corrupt" {
			t.Errorf("hostname %q", p.Hostname)
		}
		info, _ := f.TemplateInfo(ctx)
		if info.Problem != "" || !info.Created.After(first.Created) {
			t.Errorf("template not rebuilt: %+v", info)
		}
	})
	t.Run("fails to restore", func(t *testing.T) {
		// Device state that matches its recorded digest but that QEMU cannot load.
		metaPath := filepath.Join(tplDir, "template.json")
		b, err := os.ReadFile(metaPath)
		if err != nil {
			t.Fatal(err)
		}
		var meta map[string]any
		if err := json.Unmarshal(b, &meta); err != nil {
			t.Fatal(err)
		}
		garbage := []byte("not a migration stream")
		if err := os.WriteFile(filepath.Join(tplDir, meta["state_file"].(string)), garbage, 0o600); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(garbage)
		meta["state_sha256"], meta["state_size"] = hex.EncodeToString(sum[:]), len(garbage)
		if b, err = json.Marshal(meta); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(metaPath, b, 0o600); err != nil {
			t.Fatal(err)
		}
		before, _ := f.TemplateInfo(ctx)
		if before.Problem != "" {
			t.Fatalf("the doctored template does not look usable: %s", before.Problem)
		}
		sb := fx.sandbox("after-restore-failure", f, 1, 256)
		if p := runProbe(t, sb, "c"); p.Hostname != "after-restore-failure" {
			t.Errorf("hostname %q", p.Hostname)
		}
		if after, _ := f.TemplateInfo(ctx); after.Problem != "" || !after.Created.After(before.Created) {
			t.Errorf("template not rebuilt after a failed restore: %+v", after)
		}
	})
	t.Run("stale", func(t *testing.T) {
		before, _ := f.TemplateInfo(ctx)
		// The guest image changes (make image): the template no longer matches.
		newInitrd := filepath.Join(fx.root, "initramfs.img")
		data, err := os.ReadFile(fx.base.Initrd)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(newInitrd, data, 0o600); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(newInitrd)
		fx.base.Initrd = newInitrd
		f2 := fx.factory(true, false)
		if info, _ := f2.TemplateInfo(ctx); !strings.Contains(info.Problem, "stale") || !strings.Contains(info.Problem, "initrd") {
			t.Errorf("status of a stale template: %q", info.Problem)
		}
		sb := fx.sandbox("after-stale", f2, 1, 256)
		if p := runProbe(t, sb, "c"); p.Hostname != "after-stale" {
			t.Errorf("hostname %q", p.Hostname)
		}
		info, _ := f2.TemplateInfo(ctx)
		if info.Problem != "" || info.Hash == before.Hash {
			t.Errorf("template not rebuilt for the new image: %+v", info)
		}
	})
}
