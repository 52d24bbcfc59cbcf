package config

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadOrder(t *testing.T) {
	dir := t.TempDir()
	explicit := writeFile(t, dir, "explicit.toml", "[hypervisor]\ndefault_vcpus = 2\n")
	env := writeFile(t, dir, "env.toml", "[hypervisor]\ndefault_vcpus = 3\n")
	system := writeFile(t, dir, "system.toml", "[hypervisor]\ndefault_vcpus = 4\n")
	missing := filepath.Join(dir, "missing.toml")
	envWith := func(v string) func(string) string {
		return func(k string) string {
			if k == EnvVar {
				return v
			}
			return ""
		}
	}
	for _, tc := range []struct {
		name       string
		explicit   string
		getenv     func(string) string
		system     string
		wantVCPUs  uint32
		wantSource string
		wantErr    error
	}{
		{"explicit wins", explicit, envWith(env), system, 2, explicit, nil},
		{"env next", "", envWith(env), system, 3, env, nil},
		{"system next", "", envWith(""), system, 4, system, nil},
		{"defaults last", "", envWith(""), missing, 1, "", nil},
		{"nil getenv", "", nil, missing, 1, "", nil},
		{"no system path", "", nil, "", 1, "", nil},
		{"explicit must exist", missing, envWith(env), system, 0, "", fs.ErrNotExist},
		{"env file must exist", "", envWith(missing), system, 0, "", fs.ErrNotExist},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, src, err := LoadFrom(tc.explicit, tc.getenv, tc.system)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("got %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Hypervisor.DefaultVCPUs != tc.wantVCPUs || src != tc.wantSource {
				t.Fatalf("vcpus %d from %q, want %d from %q", c.Hypervisor.DefaultVCPUs, src, tc.wantVCPUs, tc.wantSource)
			}
		})
	}
}

func TestLoadPublic(t *testing.T) {
	p := writeFile(t, t.TempDir(), "c.toml", "[agent]\ndial_timeout = 5\n")
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.Agent.DialTimeoutDuration().Seconds() != 5 {
		t.Fatalf("dial timeout %v", c.Agent.DialTimeoutDuration())
	}
	// Keys the file does not set keep their defaults.
	if c.Hypervisor.DefaultMemory != DefaultMemoryMiB || len(c.Hypervisor.ValidEntropySources) != 2 {
		t.Fatalf("defaults lost: %+v", c.Hypervisor)
	}
}

func TestLoadFileErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, body, want string
	}{
		{"syntax", "[hypervisor\n", "c.toml"},
		{"unknown key", "[hypervisor]\nbogus = 1\n", "unknown key hypervisor.bogus"},
		{"unknown section", "[nope]\nx = 1\n", "unknown key nope"},
		{"kata table", "[hypervisor.qemu]\npath = \"/x\"\n", "Kata's [hypervisor.qemu]"},
		{"type", "[hypervisor]\ndefault_vcpus = \"two\"\n", "hypervisor.default_vcpus"},
		{"duplicate", "[agent]\ndial_timeout = 1\ndial_timeout = 2\n", "c.toml"},
		{"too large", strings.Repeat("#", maxFileSize+1), "larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := writeFile(t, dir, "c.toml", tc.body)
			_, err := LoadFile(p)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p) {
				t.Fatalf("got %v, want an error naming %s and containing %q", err, p, tc.want)
			}
		})
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	c := Default()
	c.Hypervisor.KernelParams = `quiet "x"`
	c.Agent.KernelModules = []string{"e1000e EEE=1"}
	var b bytes.Buffer
	if err := c.Encode(&b); err != nil {
		t.Fatal(err)
	}
	back, err := Parse(b.Bytes(), "encoded")
	if err != nil {
		t.Fatalf("encoded configuration does not load: %v\n%s", err, b.String())
	}
	var b2 bytes.Buffer
	if err := back.Encode(&b2); err != nil {
		t.Fatal(err)
	}
	if b.String() != b2.String() {
		t.Fatalf("round trip differs:\n%s\n---\n%s", b.String(), b2.String())
	}
	if !reflect.DeepEqual(back, c) {
		t.Errorf("round trip changed the configuration:\n got %+v\nwant %+v", back, c)
	}
	// Every key is printed, a key that is not supported (or has unsupported values) below a
	// comment giving the reason, and only such keys.
	lines := strings.Split(b.String(), "\n")
	for _, k := range Keys() {
		sec := slices.Index(lines, "["+k.Section+"]")
		i := slices.IndexFunc(lines[sec+1:], func(l string) bool { return strings.HasPrefix(l, k.Name+" = ") }) + sec + 1
		if sec < 0 || i == sec {
			t.Errorf("key %s not printed", k.FullName())
			continue
		}
		above := lines[i-1]
		switch {
		case !k.Supported():
			if want := "# Not supported, only the default is accepted: " + k.Unsupported + "."; above != want {
				t.Errorf("above %s: got %q, want %q", k.FullName(), above, want)
			}
		case len(k.UnsupportedValues) > 0:
			if want := "# Supported: " + k.SupportText() + "."; above != want {
				t.Errorf("above %s: got %q, want %q", k.FullName(), above, want)
			}
		case strings.HasPrefix(above, "#"):
			t.Errorf("supported key %s has a comment: %q", k.FullName(), above)
		}
	}
}
