package nodeinstall

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/vessel-containers/vessel/internal/config"
	"github.com/vessel-containers/vessel/internal/testutil"
)

func writeFile(t *testing.T, path, content string, perm fs.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil {
		t.Fatal(err)
	}
}

// release writes a directory as `vessel install --from` takes it.
func release(t *testing.T, version string) string {
	t.Helper()
	from := t.TempDir()
	for _, name := range Binaries {
		writeFile(t, filepath.Join(from, name), "#!"+name+" "+version+"\n", 0o755)
	}
	writeFile(t, filepath.Join(from, "vmlinux"), "kernel "+version, 0o644)
	writeFile(t, filepath.Join(from, "initramfs.img"), "initramfs "+version, 0o644)
	writeFile(t, filepath.Join(from, "manifest.json"), `{"version":"`+version+`"}`, 0o644)
	return from
}

// hostRoot writes a node's / with a containerd 2.x configuration, an older vessel in
// /usr/local/bin (which the install replaces) and a vessel-monitor as the release has it
// (which it leaves alone).
func hostRoot(t *testing.T, from string) string {
	t.Helper()
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "etc/containerd/config.toml"), "version = 3\nroot = '/var/lib/containerd'\n", 0o644)
	writeFile(t, filepath.Join(root, "usr/local/bin/vessel"), "#!vessel old\n", 0o700)
	data, err := os.ReadFile(filepath.Join(from, "vessel-monitor"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(root, "usr/local/bin/vessel-monitor"), string(data), 0o755)
	return root
}

func TestInstallFilesUnderRoot(t *testing.T) {
	from := release(t, "v1")
	root := hostRoot(t, from)
	before := testutil.Tree(t, root)
	opts := Options{Config: DefaultConfig, Root: root, From: from}

	p, err := PlanInstall(opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(testutil.Tree(t, root), before) {
		t.Fatal("planning changed the tree")
	}
	var got []string
	for _, c := range p.Changes {
		got = append(got, c.Action+" "+strings.TrimPrefix(c.Path, root))
	}
	want := []string{
		"replace /usr/local/bin/vessel",
		"install /usr/local/bin/containerd-shim-vessel-v2",
		"mkdir /var", "mkdir /var/lib", "mkdir /var/lib/vessel", "mkdir /var/lib/vessel/guest",
		"install /var/lib/vessel/guest/vmlinux",
		"install /var/lib/vessel/guest/initramfs.img",
		"install /var/lib/vessel/guest/manifest.json",
		"mkdir /etc/vessel",
		"install /etc/vessel/configuration.toml",
		"create /etc/containerd/conf.d/vessel.toml",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("changes:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if err := p.Apply(); err != nil {
		t.Fatal(err)
	}

	after := testutil.Tree(t, root)
	for path, wantV := range map[string]string{
		"usr/local/bin/vessel":                    "-rwxr-xr-x #!vessel v1\n",
		"usr/local/bin/containerd-shim-vessel-v2": "-rwxr-xr-x #!containerd-shim-vessel-v2 v1\n",
		"var/lib/vessel/guest/vmlinux":            "-rw-r--r-- kernel v1",
		"var/lib/vessel/guest/initramfs.img":      "-rw-r--r-- initramfs v1",
	} {
		if after[path] != wantV {
			t.Errorf("%s: %q, want %q", path, after[path], wantV)
		}
	}
	data, err := os.ReadFile(filepath.Join(root, DefaultVesselConfig))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(data, DefaultVesselConfig)
	if err != nil {
		t.Fatalf("the written Vessel configuration does not load: %v", err)
	}
	if cfg.Hypervisor.Kernel != "/var/lib/vessel/guest/vmlinux" || cfg.Hypervisor.Initrd != "/var/lib/vessel/guest/initramfs.img" {
		t.Errorf("the written configuration names kernel %s, initrd %s", cfg.Hypervisor.Kernel, cfg.Hypervisor.Initrd)
	}
	// The handler names host paths, not paths beneath the root.
	checkVessel(t, filepath.Join(root, "etc/containerd/conf.d/vessel.toml"), "io.containerd.cri.v1.runtime", DefaultVesselConfig)
	backup := filepath.Join(root, "etc/containerd/config.toml.vessel-install.d/0-vessel")
	if after[strings.TrimPrefix(backup, root+"/")] != "-rw------- #!vessel old\n" {
		t.Errorf("no backup of the replaced vessel at %s: %q", backup, after[strings.TrimPrefix(backup, root+"/")])
	}

	again, err := PlanInstall(opts, nil)
	if err != nil || !again.Installed {
		t.Fatalf("second install: %+v, %v; want already installed", again, err)
	}

	// Another release replaces the files; the record keeps the vessel of before v1.
	v2 := release(t, "v2")
	writeFile(t, filepath.Join(v2, "manifest.json"), `{"version":"v1"}`, 0o644)
	writeFile(t, filepath.Join(v2, "vessel-monitor"), "#!vessel-monitor v2\n", 0o755)
	up2, err := PlanInstall(Options{Config: DefaultConfig, Root: root, From: v2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got = nil
	for _, c := range up2.Changes {
		got = append(got, c.Action+" "+strings.TrimPrefix(c.Path, root))
	}
	want = []string{
		"replace /usr/local/bin/vessel",
		"replace /usr/local/bin/containerd-shim-vessel-v2",
		"replace /usr/local/bin/vessel-monitor",
		"replace /var/lib/vessel/guest/vmlinux",
		"replace /var/lib/vessel/guest/initramfs.img",
	}
	if !up2.Upgrade || !reflect.DeepEqual(got, want) {
		t.Errorf("upgrade (%v) changes:\n%s\nwant\n%s", up2.Upgrade, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if err := up2.Apply(); err != nil {
		t.Fatal(err)
	}
	if got := testutil.Tree(t, root)["usr/local/bin/vessel"]; got != "-rwxr-xr-x #!vessel v2\n" {
		t.Errorf("vessel after the upgrade: %q", got)
	}
	if again, err := PlanInstall(Options{Config: DefaultConfig, Root: root, From: v2}, nil); err != nil || !again.Installed {
		t.Fatalf("install after the upgrade: %+v, %v; want already installed", again, err)
	}

	uninstallRestores(t, root, false, before)
}

func TestInstallFilesGuestDir(t *testing.T) {
	from := release(t, "v1")
	root := t.TempDir()
	opts := Options{Config: DefaultConfig, Root: root, From: from, Version: 2, Prefix: "/opt/vessel", GuestDir: "/srv/guest"}
	install(t, opts)
	for _, p := range []string{"opt/vessel/bin/vessel", "srv/guest/vmlinux", "etc/containerd/config.toml"} {
		if _, err := os.Stat(filepath.Join(root, p)); err != nil {
			t.Error(err)
		}
	}
	data, err := os.ReadFile(filepath.Join(root, DefaultVesselConfig))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(data, DefaultVesselConfig)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Hypervisor.Kernel != "/srv/guest/vmlinux" || !reflect.DeepEqual(cfg.Hypervisor.ValidImagePaths, []string{"/srv/guest/*"}) {
		t.Errorf("kernel %s, valid_image_paths %v; want them in /srv/guest", cfg.Hypervisor.Kernel, cfg.Hypervisor.ValidImagePaths)
	}
	up, err := PlanUninstall(DefaultConfig, root, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := up.Apply(); err != nil {
		t.Fatal(err)
	}
	if got := testutil.Tree(t, root); len(got) != 1 {
		t.Errorf("after uninstall the root holds %v, want nothing", got)
	}
}

func TestInstallFilesRefuses(t *testing.T) {
	t.Run("missing binary", func(t *testing.T) {
		from := release(t, "v1")
		if err := os.Remove(filepath.Join(from, "vessel-monitor")); err != nil {
			t.Fatal(err)
		}
		_, err := PlanInstall(Options{Config: DefaultConfig, Root: t.TempDir(), Version: 3, From: from}, nil)
		if err == nil || !strings.Contains(err.Error(), "must hold vessel-monitor") {
			t.Errorf("got %v, want an error naming vessel-monitor", err)
		}
	})
	t.Run("symbolic link in the way", func(t *testing.T) {
		root := t.TempDir()
		if err := os.MkdirAll(filepath.Join(root, "usr/local/bin"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("/bin/true", filepath.Join(root, "usr/local/bin/vessel")); err != nil {
			t.Fatal(err)
		}
		_, err := PlanInstall(Options{Config: DefaultConfig, Root: root, Version: 3, From: release(t, "v1")}, nil)
		if err == nil || !strings.Contains(err.Error(), "bin/vessel is not a regular file") {
			t.Errorf("got %v, want a refusal naming vessel", err)
		}
	})
	t.Run("relative root", func(t *testing.T) {
		_, err := PlanInstall(Options{Root: "host", Version: 3}, nil)
		if err == nil || !strings.Contains(err.Error(), `root "host"`) {
			t.Errorf("got %v", err)
		}
	})
}

// A file the install wrote that changed since is not removed without --force.
func TestUninstallChangedFile(t *testing.T) {
	from := release(t, "v1")
	root := hostRoot(t, from)
	before := testutil.Tree(t, root)
	install(t, Options{Config: DefaultConfig, Root: root, From: from})
	writeFile(t, filepath.Join(root, "var/lib/vessel/guest/vmlinux"), "patched", 0o644)
	if _, err := PlanUninstall(DefaultConfig, root, false); err == nil || !strings.Contains(err.Error(), "vmlinux changed since vessel install wrote it") {
		t.Fatalf("got %v, want a refusal naming vmlinux", err)
	}
	uninstallRestores(t, root, true, before)
}

// An install that fails part way puts back what it wrote.
func TestInstallFilesRollback(t *testing.T) {
	from := release(t, "v1")
	root := hostRoot(t, from)
	before := testutil.Tree(t, root)
	p, err := PlanInstall(Options{Config: DefaultConfig, Root: root, From: from}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// After vessel is replaced, the shim cannot be written.
	blocker := filepath.Join(root, "usr/local/bin/containerd-shim-vessel-v2")
	if err := os.MkdirAll(blocker, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(blocker, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	err = p.Apply()
	if err == nil {
		t.Fatal("Apply succeeded with a directory where the shim goes")
	}
	if err := os.RemoveAll(blocker); err != nil {
		t.Fatal(err)
	}
	if got := testutil.Tree(t, root); !reflect.DeepEqual(got, before) {
		t.Errorf("after a failed install the tree is\n%v\nwant\n%v", got, before)
	}
}

// The record lists what was written and what was replaced.
func TestInstallRecord(t *testing.T) {
	from := release(t, "v1")
	root := hostRoot(t, from)
	install(t, Options{Config: DefaultConfig, Root: root, From: from})
	data, err := os.ReadFile(StatePath(filepath.Join(root, DefaultConfig)))
	if err != nil {
		t.Fatal(err)
	}
	var st State
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range st.Files {
		got = append(got, fmt.Sprintf("%s %04o %t", strings.TrimPrefix(f.Path, root), f.Perm, f.Backup != ""))
	}
	want := []string{
		"/usr/local/bin/vessel 0755 true",
		"/usr/local/bin/containerd-shim-vessel-v2 0755 false",
		"/var/lib/vessel/guest/vmlinux 0644 false",
		"/var/lib/vessel/guest/initramfs.img 0644 false",
		"/var/lib/vessel/guest/manifest.json 0644 false",
		"/etc/vessel/configuration.toml 0644 false",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("recorded files:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// An upgrade that fails part way puts back the files and the record of before.
func TestUpgradeRollback(t *testing.T) {
	from := release(t, "v1")
	root := hostRoot(t, from)
	install(t, Options{Config: DefaultConfig, Root: root, From: from})
	installed := testutil.Tree(t, root)
	v2 := release(t, "v2")
	p, err := PlanInstall(Options{Config: DefaultConfig, Root: root, From: v2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Upgrade {
		t.Fatal("not an upgrade")
	}
	// vessel-monitor was there before the install (the same bytes as v1's): the upgrade
	// backs it up and replaces it, then fails writing the kernel, where a directory is now.
	kernel := filepath.Join(root, "var/lib/vessel/guest/vmlinux")
	if err := os.Remove(kernel); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(kernel, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(kernel, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := p.Apply(); err == nil {
		t.Fatal("the upgrade succeeded with a directory where the kernel goes")
	}
	if err := os.RemoveAll(kernel); err != nil {
		t.Fatal(err)
	}
	writeFile(t, kernel, "kernel v1", 0o644)
	if got := testutil.Tree(t, root); !reflect.DeepEqual(got, installed) {
		t.Errorf("after a failed upgrade the tree is\n%v\nwant\n%v", got, installed)
	}
}

// Under --root, a host's absolute symbolic link leads beneath the root, as on the host.
func TestInstallFilesRootSymlink(t *testing.T) {
	from := release(t, "v1")
	root := hostRoot(t, from)
	if err := os.MkdirAll(filepath.Join(root, "data/lib"), 0o755); err != nil {
		t.Fatal(err)
	}
	// /var -> /data on the host; beneath the root, not this machine's /data.
	if err := os.Symlink("/data", filepath.Join(root, "var")); err != nil {
		t.Fatal(err)
	}
	before := testutil.Tree(t, root)
	install(t, Options{Config: DefaultConfig, Root: root, From: from})
	if got := testutil.Tree(t, root)["data/lib/vessel/guest/vmlinux"]; got != "-rw-r--r-- kernel v1" {
		t.Errorf("the kernel beneath the root's /data: %q, want it there", got)
	}
	uninstallRestores(t, root, false, before)
}

// An install from a pod (the host's / at /host) is undone on the host itself: the record
// names its paths beneath the root it ran with.
func TestUninstallOtherRoot(t *testing.T) {
	from := release(t, "v1")
	host := hostRoot(t, from)
	before := testutil.Tree(t, host)
	pod := filepath.Join(t.TempDir(), "host")
	if err := os.Symlink(host, pod); err != nil {
		t.Fatal(err)
	}
	install(t, Options{Config: DefaultConfig, Root: pod, From: from})
	if again, err := PlanInstall(Options{Config: DefaultConfig, Root: host, From: from}, nil); err != nil || !again.Installed {
		t.Fatalf("install from the other root: %+v, %v; want already installed", again, err)
	}
	uninstallRestores(t, host, false, before)
}

// An uninstall that fails part way can be run again (with --force: the files it put back
// differ from the record), and then puts back everything.
func TestUninstallAgainAfterFailure(t *testing.T) {
	from := release(t, "v1")
	root := hostRoot(t, from)
	config := filepath.Join(root, "etc/containerd/config.toml")
	writeFile(t, config, "version = 2\n", 0o644) // the handler is appended to it
	before := testutil.Tree(t, root)
	install(t, Options{Config: DefaultConfig, Root: root, From: from})
	installed, err := os.ReadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	up, err := PlanUninstall(DefaultConfig, root, false)
	if err != nil {
		t.Fatal(err)
	}
	// containerd's configuration cannot be put back: a directory is where it goes.
	if err := os.Remove(config); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(config, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(config, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := up.Apply(); err == nil {
		t.Fatal("uninstall succeeded with a directory where the configuration goes")
	}
	if err := os.RemoveAll(config); err != nil {
		t.Fatal(err)
	}
	writeFile(t, config, string(installed), 0o644)
	if _, err := PlanUninstall(DefaultConfig, root, false); err == nil || !strings.Contains(err.Error(), "changed since vessel install wrote it") {
		t.Fatalf("second uninstall without --force: %v, want a refusal", err)
	}
	uninstallRestores(t, root, true, before)
}

// uninstallRestores uninstalls what the record beneath root names (force: whatever
// changed since) and checks that the tree beneath root is before again.
func uninstallRestores(t *testing.T, root string, force bool, before map[string]string) {
	t.Helper()
	up, err := PlanUninstall(DefaultConfig, root, force)
	if err != nil {
		t.Fatal(err)
	}
	if err := up.Apply(); err != nil {
		t.Fatal(err)
	}
	if got := testutil.Tree(t, root); !reflect.DeepEqual(got, before) {
		t.Errorf("after uninstall (force %v) the tree is\n%v\nwant\n%v", force, got, before)
	}
}
