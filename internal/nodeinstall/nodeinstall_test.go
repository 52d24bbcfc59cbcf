package nodeinstall

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// fixture copies testdata/name (or writes content when name is "") to a new directory as
// config.toml and returns its path.
func fixture(t *testing.T, name, content string) string {
	t.Helper()
	data := []byte(content)
	if name != "" {
		var err error
		if data, err = os.ReadFile(filepath.Join("testdata", name)); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(path, data, 0o640); err != nil {
		t.Fatal(err)
	}
	return path
}

// handler decodes file and returns the handler's table under plugin.
func handler(t *testing.T, file, plugin, name string) map[string]any {
	t.Helper()
	var tree map[string]any
	if _, err := toml.DecodeFile(file, &tree); err != nil {
		t.Fatalf("%s does not parse: %v", file, err)
	}
	h := table(tree, "plugins", plugin, "containerd", "runtimes", name)
	if h == nil {
		t.Fatalf("%s has no handler %s under plugins.%s", file, name, plugin)
	}
	return h
}

func checkVessel(t *testing.T, file, plugin, vesselConfig string) {
	t.Helper()
	h := handler(t, file, plugin, "vessel")
	if got := h["runtime_type"]; got != RuntimeType {
		t.Errorf("runtime_type = %v, want %s", got, RuntimeType)
	}
	if got := h["privileged_without_host_devices"]; got != true {
		t.Errorf("privileged_without_host_devices = %v, want true", got)
	}
	if got, want := h["pod_annotations"], []any{"io.vessel.config.*", "io.katacontainers.config.*"}; !reflect.DeepEqual(got, want) {
		t.Errorf("pod_annotations = %v, want %v", got, want)
	}
	if got := table(h, "options")["ConfigPath"]; got != vesselConfig {
		t.Errorf("options.ConfigPath = %v, want %s", got, vesselConfig)
	}
}

func install(t *testing.T, o Options) *Plan {
	t.Helper()
	p, err := PlanInstall(o, nil)
	if err != nil {
		t.Fatalf("PlanInstall: %v", err)
	}
	if err := p.Apply(); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return p
}

func uninstall(t *testing.T, config string, force bool) {
	t.Helper()
	p, err := PlanUninstall(config, "", force)
	if err != nil {
		t.Fatalf("PlanUninstall: %v", err)
	}
	if err := p.Apply(); err != nil {
		t.Fatalf("uninstall Apply: %v", err)
	}
}

// dirEntries lists dir's names.
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestInstallUninstall(t *testing.T) {
	for _, tc := range []struct {
		name, fixture, content string
		version                int64
		wantDropIn, wantRunc   bool
		plugin                 string
	}{
		{name: "1.6 default config", fixture: "containerd-1.6-default.toml", plugin: "io.containerd.grpc.v1.cri"},
		{name: "2.x default config", fixture: "containerd-2-default.toml", plugin: "io.containerd.cri.v1.runtime"},
		{
			name: "1.6 imports conf.d, no CRI section", plugin: "io.containerd.grpc.v1.cri", wantDropIn: true, wantRunc: true,
			content: "version = 2\nimports = [\"conf.d/*.toml\"]\nroot = \"/var/lib/containerd\"\n",
		},
		{
			name: "1.6 imports conf.d, CRI section", plugin: "io.containerd.grpc.v1.cri", wantRunc: true,
			content: "version = 2\nimports = [\"conf.d/*.toml\"]\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"registry.k8s.io/pause:3.9\"\n",
		},
		{
			name: "2.x imports conf.d, CRI section", plugin: "io.containerd.cri.v1.runtime", wantDropIn: true,
			content: "version = 3\nimports = ['conf.d/*.toml']\n[plugins.'io.containerd.cri.v1.runtime']\n  enable_selinux = false\n",
		},
		{
			name: "1.6 no trailing newline", plugin: "io.containerd.grpc.v1.cri", wantRunc: true,
			content: "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\n  snapshotter = \"overlayfs\"",
		},
		{name: "comments only, version given", plugin: "io.containerd.cri.v1.runtime", version: 3, content: "# containerd configuration\n"},
		{name: "empty file, version given", plugin: "io.containerd.grpc.v1.cri", version: 2, wantRunc: true, content: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			config := fixture(t, tc.fixture, tc.content)
			before, err := os.ReadFile(config)
			if err != nil {
				t.Fatal(err)
			}
			p := install(t, Options{Config: config, Version: tc.version, VesselConfig: "/etc/vessel/k8s.toml"})
			if p.DropIn != tc.wantDropIn {
				t.Fatalf("drop-in = %v, want %v", p.DropIn, tc.wantDropIn)
			}
			file := config
			after, err := os.ReadFile(config)
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantDropIn {
				file = DropInPath(config)
				if !bytes.Equal(after, before) {
					t.Errorf("drop-in install changed %s:\n%s", config, after)
				}
			} else if !bytes.HasPrefix(after, before) {
				t.Errorf("install did not keep %s's bytes in front:\n%s", config, after)
			}
			checkVessel(t, file, tc.plugin, "/etc/vessel/k8s.toml")
			if tc.wantRunc {
				if got := handler(t, file, tc.plugin, "runc")["runtime_type"]; got != "io.containerd.runc.v2" {
					t.Errorf("runc runtime_type = %v", got)
				}
			}
			if fi, err := os.Stat(config); err != nil || fi.Mode().Perm() != 0o640 {
				t.Errorf("config mode after install: %v, %v; want 0640", fi, err)
			}

			again, err := PlanInstall(Options{Config: config, Version: tc.version, VesselConfig: "/etc/vessel/k8s.toml"}, nil)
			if err != nil || !again.Installed {
				t.Fatalf("second install: %+v, %v; want already installed", again, err)
			}

			uninstall(t, config, false)
			got, err := os.ReadFile(config)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, before) {
				t.Errorf("after uninstall %s is\n%q\nwant\n%q", config, got, before)
			}
			if names := dirEntries(t, filepath.Dir(config)); !reflect.DeepEqual(names, []string{"config.toml"}) {
				t.Errorf("after uninstall the directory holds %v, want only config.toml", names)
			}
		})
	}
}

func TestInstallMissingConfig(t *testing.T) {
	dir := t.TempDir()
	config := filepath.Join(dir, "config.toml")
	if _, err := PlanInstall(Options{Config: config}, nil); err == nil || !strings.Contains(err.Error(), "no version") {
		t.Fatalf("missing file, no version: %v, want an error asking for the version", err)
	}
	detect := func() (int64, error) { return 3, nil }
	p, err := PlanInstall(Options{Config: config}, detect)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Changes) != 1 || p.Changes[0].Action != "create" {
		t.Fatalf("changes %+v, want one create", p.Changes)
	}
	if _, err := os.Stat(config); err == nil {
		t.Fatal("planning wrote the file")
	}
	if err := p.Apply(); err != nil {
		t.Fatal(err)
	}
	checkVessel(t, config, "io.containerd.cri.v1.runtime", DefaultVesselConfig)
	uninstall(t, config, false)
	if names := dirEntries(t, dir); len(names) != 0 {
		t.Errorf("after uninstall the directory holds %v, want nothing", names)
	}
}

func TestInstallRestrictOOMScoreAdj(t *testing.T) {
	config := fixture(t, "", "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\n  snapshotter = \"overlayfs\"\n")
	install(t, Options{Config: config, RestrictOOMScoreAdj: true})
	var tree map[string]any
	if _, err := toml.DecodeFile(config, &tree); err != nil {
		t.Fatal(err)
	}
	if got := table(tree, "plugins", "io.containerd.grpc.v1.cri")["restrict_oom_score_adj"]; got != true {
		t.Errorf("restrict_oom_score_adj = %v, want true", got)
	}
	if got := table(tree, "plugins", "io.containerd.grpc.v1.cri", "containerd")["snapshotter"]; got != "overlayfs" {
		t.Errorf("the user's snapshotter is %v after install", got)
	}

	// containerd's default config sets it to false in a table of its own.
	config = fixture(t, "containerd-1.6-default.toml", "")
	_, err := PlanInstall(Options{Config: config, RestrictOOMScoreAdj: true}, nil)
	if err == nil || !strings.Contains(err.Error(), "restrict_oom_score_adj = false") {
		t.Errorf("install over restrict_oom_score_adj = false: %v, want a refusal naming it", err)
	}
}

func TestInstallRefuses(t *testing.T) {
	for _, tc := range []struct{ name, content, want string }{
		{"handler exists", "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.vessel]\n  runtime_type = \"io.containerd.vessel.v2\"\n", `already configures a runtime handler "vessel"`},
		{"handler exists, 2.x", "version = 3\n[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.vessel]\n  runtime_type = 'x'\n", `already configures a runtime handler "vessel"`},
		{"not TOML", "version = 2\n[plugins\n", "cannot be parsed"},
		{"version 1", "root = \"/var/lib/containerd\"\n", "config version 1"},
		{"version 4", "version = 4\n", "version = 4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			config := fixture(t, "", tc.content)
			_, err := PlanInstall(Options{Config: config}, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			if names := dirEntries(t, filepath.Dir(config)); !reflect.DeepEqual(names, []string{"config.toml"}) {
				t.Errorf("a refused install left %v", names)
			}
		})
	}

	t.Run("handler in an import", func(t *testing.T) {
		config := fixture(t, "", "version = 3\nimports = ['other/*.toml']\n")
		dir := filepath.Join(filepath.Dir(config), "other")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "k.toml"), []byte("version = 3\n[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.vessel]\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := PlanInstall(Options{Config: config}, nil)
		if err == nil || !strings.Contains(err.Error(), "k.toml already configures") {
			t.Fatalf("got %v, want a refusal naming k.toml", err)
		}
	})
	t.Run("1.6 CRI section in an import", func(t *testing.T) {
		config := fixture(t, "", "version = 2\nimports = ['other.toml']\n")
		if err := os.WriteFile(filepath.Join(filepath.Dir(config), "other.toml"), []byte("version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := PlanInstall(Options{Config: config}, nil)
		if err == nil || !strings.Contains(err.Error(), "other.toml: add the handler there") {
			t.Fatalf("got %v, want a refusal naming other.toml", err)
		}
	})
	t.Run("version disagrees", func(t *testing.T) {
		config := fixture(t, "containerd-2-default.toml", "")
		_, err := PlanInstall(Options{Config: config, Version: 2}, nil)
		if err == nil || !strings.Contains(err.Error(), "not the 2 asked for") {
			t.Fatalf("got %v", err)
		}
	})
}

func TestUninstallChangedConfig(t *testing.T) {
	config := fixture(t, "containerd-1.6-default.toml", "")
	before, err := os.ReadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	install(t, Options{Config: config})
	f, err := os.OpenFile(config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("# edited later\n"); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := PlanInstall(Options{Config: config}, nil); err == nil || !strings.Contains(err.Error(), "changed since vessel install wrote it") {
		t.Errorf("install over a changed install: %v, want a refusal", err)
	}
	if _, err := PlanUninstall(config, "", false); err == nil || !strings.Contains(err.Error(), "changed since vessel install wrote it") {
		t.Fatalf("uninstall of a changed config: %v, want a refusal", err)
	}
	uninstall(t, config, true)
	got, err := os.ReadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, before) {
		t.Error("uninstall --force did not put back the original bytes")
	}
	if _, err := PlanUninstall(config, "", false); err == nil || !strings.Contains(err.Error(), "no vessel install recorded") {
		t.Errorf("second uninstall: %v, want no install recorded", err)
	}
}

func TestVersionFromRelease(t *testing.T) {
	for _, tc := range []struct {
		out  string
		want int64
		err  bool
	}{
		{out: "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3\n", want: 2},
		{out: "containerd github.com/containerd/containerd v1.7.24 88bf19b2105c8b17560993bee28a01ddc2f97182\n", want: 2},
		{out: "containerd github.com/containerd/containerd/v2 v2.2.9 \n", want: 3},
		{out: "containerd github.com/containerd/containerd v0.2.3\n", err: true},
		{out: "runc version 1.1.5\n", err: true},
	} {
		got, err := versionFromRelease(tc.out)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("versionFromRelease(%q) = %d, %v; want %d (error %v)", tc.out, got, err, tc.want, tc.err)
		}
	}
}

func TestInstallDropInExists(t *testing.T) {
	config := fixture(t, "", "version = 3\nimports = ['conf.d/*.toml']\n")
	dir := filepath.Join(filepath.Dir(config), "conf.d")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "vessel.toml"), []byte("version = 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := PlanInstall(Options{Config: config}, nil)
	if err == nil || !strings.Contains(err.Error(), "vessel.toml exists and vessel install did not write it") {
		t.Fatalf("got %v, want a refusal naming the drop-in", err)
	}
}

// containerd 2.x's own import covers the drop-in of the default configuration path.
func TestImplicitImportCoversDefaultDropIn(t *testing.T) {
	if !covers([]string{implicitImport}, DropInPath(DefaultConfig)) {
		t.Errorf("%s does not cover %s", implicitImport, DropInPath(DefaultConfig))
	}
	if covers([]string{implicitImport}, DropInPath("/srv/containerd/config.toml")) {
		t.Error("the implicit import covers a drop-in outside /etc/containerd")
	}
}
