package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/vessel-containers/vessel/internal/config"
)

func TestParseTaskList(t *testing.T) {
	got, err := parseTaskList(strings.NewReader("TASK    PID     STATUS    \nr1      4526    RUNNING\nv1      4565    RUNNING\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["r1"] != 4526 || got["v1"] != 4565 {
		t.Errorf("got %v", got)
	}
	if _, err := parseTaskList(strings.NewReader("x notapid RUNNING\n")); err == nil {
		t.Error("bad pid parsed")
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Options)
		ok   bool
	}{
		{"defaults", func(*Options) {}, true},
		{"quick", func(o *Options) { *o = QuickOptions(); o.Out = "x" }, true},
		{"one measure", func(o *Options) { o.Measures = []string{MeasureMemory} }, true},
		{"unknown measure", func(o *Options) { o.Measures = []string{"speed"} }, false},
		{"no runs", func(o *Options) { o.Runs = 0 }, false},
		{"no output", func(o *Options) { o.Out = "" }, false},
		{"bad memory count", func(o *Options) { o.MemoryCounts = []int{0} }, false},
		{"no io runs", func(o *Options) { o.IORuns = 0 }, false},
		{"no io files", func(o *Options) { o.IOFiles = 0 }, false},
		{"no io size", func(o *Options) { o.IOSizeMiB = 0 }, false},
		{"no io random time", func(o *Options) { o.IORand = 0 }, false},
		{"io settings unused without io", func(o *Options) { o.Measures = []string{MeasureCold}; o.IORuns = 0 }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := DefaultOptions()
			o.Out = "out"
			tc.mod(&o)
			err := o.validate()
			if (err == nil) != tc.ok {
				t.Errorf("validate: got %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestAllMeasuresByDefault(t *testing.T) {
	o := DefaultOptions()
	o.Out = "out"
	if err := o.validate(); err != nil {
		t.Fatal(err)
	}
	if len(o.Measures) != len(Measures) {
		t.Errorf("got measures %v, want all", o.Measures)
	}
}

// writeFile writes data to dir/name and returns the path.
func writeFile(t *testing.T, dir, name, data string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestLoadConfigIgnoresHost checks that the benchmark's configuration never comes from the
// environment: with $VESSEL_CONFIG naming a file that turns the factory on, the benchmark
// still runs the built-in defaults.
func TestLoadConfigIgnoresHost(t *testing.T) {
	hostLike := writeFile(t, t.TempDir(), "configuration.toml", "[hypervisor]\ndefault_memory = 512\n[factory]\nenable_template = true\n")
	t.Setenv(config.EnvVar, hostLike)
	// The runtime's load order would pick that file, as it picks /etc/vessel/configuration.toml.
	if _, src, err := config.LoadFrom("", os.Getenv, hostLike); err != nil || src != hostLike {
		t.Fatalf("config.LoadFrom: got %q, %v; want %s", src, err, hostLike)
	}
	got, err := loadConfig("", "")
	if err != nil {
		t.Fatalf("loadConfig: %v", err)
	}
	if want := config.Default(); !reflect.DeepEqual(got, want) {
		t.Errorf("loadConfig with %s=%s: got %+v, want the built-in defaults %+v", config.EnvVar, hostLike, got, want)
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	// What `make install` writes to /etc/vessel/configuration.toml: `vessel env`, whose
	// [factory] section leaves the factory off.
	var installed strings.Builder
	if err := config.Default().Encode(&installed); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, data, guestDir string
		check                func(*config.Config) error
		wantErr              string
	}{
		{name: "installed default", data: installed.String()},
		{name: "plain", data: "[hypervisor]\ndefault_memory = 512\n", check: func(c *config.Config) error {
			if c.Hypervisor.DefaultMemory != 512 {
				return fmt.Errorf("default_memory %d, want 512", c.Hypervisor.DefaultMemory)
			}
			return nil
		}},
		{name: "guest dir", data: "[hypervisor]\nkernel = \"/k\"\ninitrd = \"/i\"\n", guestDir: "/g", check: func(c *config.Config) error {
			if c.Hypervisor.Kernel != "/g/vmlinux" || c.Hypervisor.Initrd != "/g/initramfs.img" {
				return fmt.Errorf("kernel %s, initrd %s; want /g/vmlinux, /g/initramfs.img", c.Hypervisor.Kernel, c.Hypervisor.Initrd)
			}
			return nil
		}},
		{name: "template on", data: strings.Replace(installed.String(), "enable_template = false", "enable_template = true", 1), wantErr: "factory.enable_template"},
		{name: "cache on", data: "[factory]\nvm_cache_number = 2\n", wantErr: "factory.vm_cache_number = 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := writeFile(t, dir, strings.ReplaceAll(tc.name, " ", "-")+".toml", tc.data)
			got, err := loadConfig(file, tc.guestDir)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), file) {
					t.Fatalf("loadConfig: got %v, want an error naming %s and %s", err, file, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("loadConfig: %v", err)
			}
			if tc.check != nil {
				if err := tc.check(got); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

// TestFactoryConfig checks that each warm mode's configuration file loads back with the
// mode's factory settings and the benchmark's other settings.
func TestFactoryConfig(t *testing.T) {
	base := config.Default()
	base.Hypervisor.DefaultMemory = 384
	for _, m := range warmModes {
		t.Run(m.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "configuration.toml")
			if err := writeConfig(factoryConfig(base, m, dir), path); err != nil {
				t.Fatal(err)
			}
			got, err := config.LoadFile(path)
			if err != nil {
				t.Fatalf("load %s: %v", path, err)
			}
			want := config.Factory{
				EnableTemplate: m.template, TemplatePath: filepath.Join(dir, "template"),
				VMCacheEndpoint: filepath.Join(dir, "cache", "factory.sock"),
			}
			if m.cache {
				want.VMCacheNumber = 1
			}
			if got.Factory != want {
				t.Errorf("factory: got %+v, want %+v", got.Factory, want)
			}
			if got.Hypervisor.DefaultMemory != 384 {
				t.Errorf("default_memory: got %d, want the base's 384", got.Hypervisor.DefaultMemory)
			}
			if base.Factory != config.Default().Factory {
				t.Errorf("factoryConfig changed its base: %+v", base.Factory)
			}
		})
	}
}
